"""The TASKA workflow: DP3 and WSClean steps over subbands, and the checks of their science."""
