"""The catalogue's tables: ivoa.obscore (ObsCore 1.1 + skyplug columns), ivoa.obscore_radio
(radio extension, note of 2025-02-28) and TAP_SCHEMA describing them all.

Units, UCDs and utypes follow ObsCore 1.1 (em_* in m, t_* in MJD days, access_estsize in kbyte);
datatypes are VOTable datatypes as TAP 1.1's TAP_SCHEMA wants them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ADQL_RESERVED = frozenset(
    {
        "SIZE",
        "TOP",
        "DISTANCE",
        "POINT",
        "CIRCLE",
        "BOX",
        "POLYGON",
        "REGION",
        "AREA",
        "COORD1",
        "COORD2",
        "COORDSYS",
        "CONTAINS",
        "INTERSECTS",
        "VALUE",
        "USER",
        "DATE",
        "TIME",
        "TIMESTAMP",
        "FIRST",
        "LAST",
        "ORDER",
        "GROUP",
        "SELECT",
        "FROM",
        "WHERE",
    }
)


@dataclass(frozen=True)
class Column:
    """One column: VOTable ``datatype`` (char, int, long, double), ``arraysize`` for strings."""

    name: str
    datatype: str
    unit: str = ""
    ucd: str = ""
    utype: str = ""
    description: str = ""
    std: bool = True
    principal: bool = False
    indexed: bool = False
    arraysize: str | None = None
    xtype: str | None = None

    @property
    def adql_name(self) -> str:
        """The name as ADQL must write it: ADQL reserved words are delimited (``"size"``)."""
        return f'"{self.name}"' if self.name.upper() in ADQL_RESERVED else self.name

    def __post_init__(self) -> None:
        if self.datatype == "char" and self.arraysize is None:
            object.__setattr__(self, "arraysize", "*")


@dataclass(frozen=True)
class Table:
    """A published table: ``name`` is ``schema.table`` as ADQL sees it."""

    name: str
    description: str
    columns: tuple[Column, ...]
    table_type: str = "table"
    utype: str = ""

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    def column(self, name: str) -> Column | None:
        """The column called ``name`` (case-insensitive), if any."""
        low = name.lower()
        return next((c for c in self.columns if c.name.lower() == low), None)


def _c(name: str, dt: str, unit: str, ucd: str, utype: str, desc: str, **kw: object) -> Column:
    return Column(name, dt, unit, ucd, f"obscore:{utype}" if utype else "", desc, **kw)  # type: ignore[arg-type]


OBSCORE_COLUMNS: tuple[Column, ...] = (
    _c(
        "dataproduct_type",
        "char",
        "",
        "meta.code.class",
        "ObsDataset.dataProductType",
        "Data product type (image, cube, spectrum, sed, timeseries, visibility, event, measurements)",
        principal=True,
    ),
    _c(
        "dataproduct_subtype",
        "char",
        "",
        "meta.code.class",
        "ObsDataset.dataProductSubtype",
        "Data product specific type",
        std=False,
    ),
    _c(
        "calib_level",
        "int",
        "",
        "meta.code;obs.calib",
        "ObsDataset.calibLevel",
        "Calibration level: 0 raw, 1 instrumental, 2 calibrated, 3 science ready, 4 analysis",
        principal=True,
    ),
    _c(
        "obs_collection",
        "char",
        "",
        "meta.id",
        "DataID.Collection",
        "Name of the data collection",
        principal=True,
    ),
    _c("obs_id", "char", "", "meta.id", "DataID.observationID", "Observation identifier", indexed=True),
    _c(
        "obs_title",
        "char",
        "",
        "meta.title;obs",
        "DataID.Title",
        "Brief description of the dataset",
        std=False,
    ),
    _c(
        "obs_creator_did",
        "char",
        "",
        "meta.id",
        "DataID.CreatorDID",
        "IVOA dataset identifier given by the creator",
        std=False,
    ),
    _c(
        "obs_publisher_did",
        "char",
        "",
        "meta.ref.ivoid",
        "Curation.PublisherDID",
        "IVOA dataset identifier given by the publisher",
        principal=True,
        indexed=True,
    ),
    _c(
        "access_url",
        "char",
        "",
        "meta.ref.url",
        "Access.Reference",
        "URL to download the data",
        principal=True,
    ),
    _c(
        "access_format",
        "char",
        "",
        "meta.code.mime",
        "Access.Format",
        "Content format of the data",
        principal=True,
    ),
    _c(
        "access_estsize",
        "long",
        "kbyte",
        "phys.size;meta.file",
        "Access.Size",
        "Estimated size of the data in kilobytes",
    ),
    _c(
        "target_name",
        "char",
        "",
        "meta.id;src",
        "Target.Name",
        "Astronomical object observed, if any",
        principal=True,
    ),
    _c("target_class", "char", "", "src.class", "Target.Class", "Class of the target object", std=False),
    _c(
        "s_ra",
        "double",
        "deg",
        "pos.eq.ra",
        "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C1",
        "Central right ascension, ICRS",
        principal=True,
        indexed=True,
    ),
    _c(
        "s_dec",
        "double",
        "deg",
        "pos.eq.dec",
        "Char.SpatialAxis.Coverage.Location.Coord.Position2D.Value2.C2",
        "Central declination, ICRS",
        principal=True,
        indexed=True,
    ),
    _c(
        "s_fov",
        "double",
        "deg",
        "phys.angSize;instr.fov",
        "Char.SpatialAxis.Coverage.Bounds.Extent.diameter",
        "Diameter (bounds) of the covered region",
        principal=True,
    ),
    _c(
        "s_region",
        "char",
        "",
        "pos.outline;obs.field",
        "Char.SpatialAxis.Coverage.Support.Area",
        "Sky region covered by the data product (STC-S, ICRS)",
        indexed=True,
    ),
    _c(
        "s_resolution",
        "double",
        "arcsec",
        "pos.angResolution",
        "Char.SpatialAxis.Resolution.Refval.value",
        "Spatial resolution of data as FWHM",
    ),
    _c(
        "s_xel1",
        "long",
        "",
        "meta.number",
        "Char.SpatialAxis.numBins1",
        "Number of elements along the first spatial axis",
    ),
    _c(
        "s_xel2",
        "long",
        "",
        "meta.number",
        "Char.SpatialAxis.numBins2",
        "Number of elements along the second spatial axis",
    ),
    _c(
        "s_pixel_scale",
        "double",
        "arcsec",
        "phys.angSize;instr.pixel",
        "Char.SpatialAxis.Sampling.RefVal.SamplingPeriod",
        "Sampling period in world coordinate units along the spatial axis",
        std=False,
    ),
    _c(
        "t_min",
        "double",
        "d",
        "time.start;obs.exposure",
        "Char.TimeAxis.Coverage.Bounds.Limits.StartTime",
        "Start time in MJD",
        principal=True,
        indexed=True,
    ),
    _c(
        "t_max",
        "double",
        "d",
        "time.end;obs.exposure",
        "Char.TimeAxis.Coverage.Bounds.Limits.StopTime",
        "Stop time in MJD",
        principal=True,
        indexed=True,
    ),
    _c(
        "t_exptime",
        "double",
        "s",
        "time.duration;obs.exposure",
        "Char.TimeAxis.Coverage.Support.Extent",
        "Total exposure time",
        principal=True,
    ),
    _c(
        "t_resolution",
        "double",
        "s",
        "time.resolution",
        "Char.TimeAxis.Resolution.Refval.value",
        "Temporal resolution FWHM",
    ),
    _c("t_xel", "long", "", "meta.number", "Char.TimeAxis.numBins", "Number of elements along the time axis"),
    _c(
        "em_min",
        "double",
        "m",
        "em.wl;stat.min",
        "Char.SpectralAxis.Coverage.Bounds.Limits.LoLimit",
        "Start in spectral coordinates (vacuum wavelength)",
        principal=True,
        indexed=True,
    ),
    _c(
        "em_max",
        "double",
        "m",
        "em.wl;stat.max",
        "Char.SpectralAxis.Coverage.Bounds.Limits.HiLimit",
        "Stop in spectral coordinates (vacuum wavelength)",
        principal=True,
        indexed=True,
    ),
    _c(
        "em_res_power",
        "double",
        "",
        "spect.resolution",
        "Char.SpectralAxis.Resolution.ResolPower.refVal",
        "Spectral resolving power lambda / delta lambda",
    ),
    _c(
        "em_xel",
        "long",
        "",
        "meta.number",
        "Char.SpectralAxis.numBins",
        "Number of elements along the spectral axis",
    ),
    _c("em_ucd", "char", "", "meta.ucd", "Char.SpectralAxis.ucd", "Nature of the spectral axis", std=False),
    _c("o_ucd", "char", "", "meta.ucd", "Char.ObservableAxis.ucd", "UCD of the observable"),
    _c(
        "pol_states",
        "char",
        "",
        "meta.code;phys.polarization",
        "Char.PolarizationAxis.stateList",
        "List of polarization states, e.g. /I/Q/U/V/",
    ),
    _c(
        "pol_xel",
        "long",
        "",
        "meta.number",
        "Char.PolarizationAxis.numBins",
        "Number of polarization samples",
    ),
    _c(
        "facility_name",
        "char",
        "",
        "meta.id;instr.tel",
        "Provenance.ObsConfig.facility.name",
        "Name of the facility used for the observation",
        principal=True,
    ),
    _c(
        "instrument_name",
        "char",
        "",
        "meta.id;instr",
        "Provenance.ObsConfig.instrument.name",
        "Name of the instrument used for the observation",
        principal=True,
    ),
    Column("preview", "char", "", "meta.ref.url;meta.preview", "", "URL of a preview of the data", std=False),
    Column(
        "skyplug_uri",
        "char",
        "",
        "meta.ref.url",
        "",
        "skyplug URI of the object (path, s3://, sky://)",
        std=False,
        principal=True,
        indexed=True,
    ),
    Column(
        "skyplug_version",
        "char",
        "",
        "meta.version",
        "",
        "Version of the object (ETag, mtime)",
        std=False,
        indexed=True,
    ),
    Column(
        "skyplug_format", "char", "", "meta.code", "", "skyplug format plugin that described it", std=False
    ),
    Column("skyplug_checksum", "char", "", "meta.code", "", "Checksum of the object, when known", std=False),
    Column("skyplug_sites", "char", "", "meta.id", "", "Sites holding a replica, comma separated", std=False),
)

RADIO_COLUMNS: tuple[Column, ...] = (
    Column(
        "obs_publisher_did",
        "char",
        "",
        "meta.ref.ivoid",
        "obscore:Curation.PublisherDID",
        "IVOA dataset identifier given by the publisher (joins ivoa.obscore)",
        principal=True,
        indexed=True,
    ),
    Column(
        "s_resolution_min",
        "double",
        "arcsec",
        "pos.angResolution;stat.min",
        "",
        "Angular resolution, best value over the spectral range",
    ),
    Column(
        "s_resolution_max",
        "double",
        "arcsec",
        "pos.angResolution;stat.max",
        "",
        "Angular resolution, worst value over the spectral range",
    ),
    Column(
        "s_fov_min",
        "double",
        "deg",
        "phys.angSize;instr.fov;stat.min",
        "",
        "Field of view diameter, smallest over the spectral range",
    ),
    Column(
        "s_fov_max",
        "double",
        "deg",
        "phys.angSize;instr.fov;stat.max",
        "",
        "Field of view diameter, largest over the spectral range",
    ),
    Column(
        "s_largest_angular_scale",
        "double",
        "arcsec",
        "phys.angSize;stat.max",
        "",
        "Largest angular scale the data are sensitive to",
    ),
    Column(
        "s_largest_angular_scale_min",
        "double",
        "arcsec",
        "phys.angSize;stat.min",
        "",
        "Largest angular scale, smallest value over the spectral range",
    ),
    Column(
        "s_largest_angular_scale_max",
        "double",
        "arcsec",
        "phys.angSize;stat.max",
        "",
        "Largest angular scale, largest value over the spectral range",
    ),
    Column(
        "f_resolution",
        "double",
        "kHz",
        "em.freq;spect.resolution",
        "",
        "Spectral resolution in frequency (channel width)",
    ),
    Column(
        "uv_distance_min",
        "double",
        "m",
        "stat.min;instr.baseline",
        "",
        "Minimal projected baseline length in the uv plane",
    ),
    Column(
        "uv_distance_max",
        "double",
        "m",
        "stat.max;instr.baseline",
        "",
        "Maximal projected baseline length in the uv plane",
    ),
    Column(
        "uv_distribution_ecc",
        "double",
        "",
        "stat.fit.param;instr.baseline",
        "",
        "Eccentricity of the uv distribution",
    ),
    Column(
        "uv_distribution_fill",
        "double",
        "",
        "arith.ratio;instr.baseline",
        "",
        "Filling factor of the uv plane",
    ),
    Column("instr_tel_number", "int", "", "meta.number;instr.tel", "", "Number of antennas (telescopes)"),
    Column(
        "instr_tel_min_dist",
        "double",
        "m",
        "instr.baseline;stat.min",
        "",
        "Minimal distance between two antennas",
    ),
    Column(
        "instr_tel_max_dist",
        "double",
        "m",
        "instr.baseline;stat.max",
        "",
        "Maximal distance between two antennas",
    ),
    Column("instr_tel_diameter", "double", "m", "instr.tel;phys.size.diameter", "", "Antenna diameter"),
    Column("instr_feed", "int", "", "meta.number;instr", "", "Number of feeds"),
    Column("scan_mode", "char", "", "meta.code;obs", "", "Scan mode (on-off, raster, on-the-fly, ...)"),
    Column(
        "tracking_mode",
        "char",
        "",
        "meta.code;obs",
        "",
        "Tracking mode (sidereal, solar system object, fixed az-el, ...)",
    ),
)


def _ts(name: str, dt: str, desc: str, **kw: object) -> Column:
    return Column(name, dt, description=desc, std=True, principal=True, **kw)  # type: ignore[arg-type]


TAP_SCHEMA_TABLES: tuple[Table, ...] = (
    Table(
        "TAP_SCHEMA.schemas",
        "Schemas published by this service",
        (
            _ts("schema_name", "char", "Schema name, as used in queries"),
            _ts("utype", "char", "Utype of the schema"),
            _ts("description", "char", "Description of the schema"),
            _ts("schema_index", "int", "Recommended sort order of schemas"),
        ),
    ),
    Table(
        "TAP_SCHEMA.tables",
        "Tables published by this service",
        (
            _ts("schema_name", "char", "Schema the table belongs to"),
            _ts("table_name", "char", "Fully qualified table name"),
            _ts("table_type", "char", "table or view"),
            _ts("utype", "char", "Utype of the table"),
            _ts("description", "char", "Description of the table"),
            _ts("table_index", "int", "Recommended sort order of tables"),
        ),
    ),
    Table(
        "TAP_SCHEMA.columns",
        "Columns of the published tables",
        (
            _ts("table_name", "char", "Fully qualified table name"),
            _ts("column_name", "char", "Column name"),
            _ts("utype", "char", "Utype of the column"),
            _ts("ucd", "char", "UCD of the column"),
            _ts("unit", "char", "Unit in VO standard format"),
            _ts("description", "char", "Description of the column"),
            _ts("datatype", "char", "VOTable datatype"),
            _ts("arraysize", "char", "VOTable arraysize"),
            _ts("xtype", "char", "VOTable xtype"),
            _ts("size", "int", "Deprecated length of the column"),
            _ts("principal", "int", "1 if the column is principal"),
            _ts("indexed", "int", "1 if the column is indexed"),
            _ts("std", "int", "1 if the column is defined by a standard"),
            _ts("column_index", "int", "Recommended sort order of columns"),
        ),
    ),
    Table(
        "TAP_SCHEMA.keys",
        "Foreign keys between published tables",
        (
            _ts("key_id", "char", "Unique key identifier"),
            _ts("from_table", "char", "Table with the foreign key"),
            _ts("target_table", "char", "Table with the primary key"),
            _ts("utype", "char", "Utype of the key"),
            _ts("description", "char", "Description of the key"),
        ),
    ),
    Table(
        "TAP_SCHEMA.key_columns",
        "Columns of the foreign keys",
        (
            _ts("key_id", "char", "Key identifier"),
            _ts("from_column", "char", "Column in the from_table"),
            _ts("target_column", "char", "Column in the target_table"),
        ),
    ),
)

OBSCORE = Table(
    "ivoa.obscore",
    "ObsCore 1.1 description of every object skyplug catalogued, with "
    "skyplug's own columns (URI, version, format, checksum, sites)",
    OBSCORE_COLUMNS,
    utype="ivo://ivoa.net/std/obscore#table-1.1",
)
OBSCORE_RADIO = Table(
    "ivoa.obscore_radio",
    "ObsCore radio extension (IVOA note 2025-02-28); join with "
    "ivoa.obscore on obs_publisher_did (NATURAL JOIN works)",
    RADIO_COLUMNS,
)

TABLES: tuple[Table, ...] = (OBSCORE, OBSCORE_RADIO, *TAP_SCHEMA_TABLES)
SCHEMAS: dict[str, str] = {
    "ivoa": "IVOA-defined tables: ObsCore and its radio extension",
    "TAP_SCHEMA": "Description of the tables and columns of this service",
}
KEYS: tuple[tuple[str, str, str, str, str], ...] = (
    ("obscore_radio_did", "ivoa.obscore_radio", "ivoa.obscore", "obs_publisher_did", "obs_publisher_did"),
    ("tables_schema", "TAP_SCHEMA.tables", "TAP_SCHEMA.schemas", "schema_name", "schema_name"),
    ("columns_table", "TAP_SCHEMA.columns", "TAP_SCHEMA.tables", "table_name", "table_name"),
    ("keys_from", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", "from_table", "table_name"),
    ("keys_target", "TAP_SCHEMA.keys", "TAP_SCHEMA.tables", "target_table", "table_name"),
    ("key_columns_key", "TAP_SCHEMA.key_columns", "TAP_SCHEMA.keys", "key_id", "key_id"),
)
RADIO_FIELDS = frozenset(c.name for c in RADIO_COLUMNS) - {"obs_publisher_did"}
SKYPLUG_FIELDS = ("skyplug_uri", "skyplug_version", "skyplug_format", "skyplug_checksum", "skyplug_sites")


@dataclass
class Schema:
    """Lookup of the published tables by ADQL name (case-insensitive)."""

    tables: dict[str, Table] = field(default_factory=lambda: {t.name.lower(): t for t in TABLES})

    def table(self, name: str) -> Table | None:
        return self.tables.get(name.lower())


SCHEMA = Schema()


def physical_name(table: Table | str) -> str:
    """Name in SQLite, which has no schemas: ``ivoa.obscore`` -> ``ivoa_obscore``."""
    name = table.name if isinstance(table, Table) else table
    return name.lower().replace(".", "_")


def tap_schema_rows() -> dict[str, list[tuple[object, ...]]]:
    """Rows of the five TAP_SCHEMA tables describing :data:`TABLES`."""
    rows: dict[str, list[tuple[object, ...]]] = {t.name: [] for t in TAP_SCHEMA_TABLES}
    for i, (schema, desc) in enumerate(SCHEMAS.items()):
        rows["TAP_SCHEMA.schemas"].append((schema, None, desc, i))
    for i, t in enumerate(TABLES):
        rows["TAP_SCHEMA.tables"].append((t.schema, t.name, t.table_type, t.utype or None, t.description, i))
        for j, c in enumerate(t.columns):
            rows["TAP_SCHEMA.columns"].append(
                (
                    t.name,
                    c.adql_name,
                    c.utype or None,
                    c.ucd or None,
                    c.unit or None,
                    c.description,
                    c.datatype,
                    c.arraysize,
                    c.xtype,
                    None,
                    int(c.principal),
                    int(c.indexed),
                    int(c.std),
                    j,
                )
            )
    for key_id, src, dst, scol, dcol in KEYS:
        rows["TAP_SCHEMA.keys"].append((key_id, src, dst, None, f"{src}.{scol} refers to {dst}.{dcol}"))
        rows["TAP_SCHEMA.key_columns"].append((key_id, scol, dcol))
    return rows
