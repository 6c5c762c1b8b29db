"""The AWS IoT SQL versions (``awsIotSqlVersion``) and what differs between them, as flags.

Every difference the compiler or the value model acts on is one flag here, with the page of the
AWS IoT developer guide that documents it (STYLE.md habit 3: dialect differences in one place).
Sources, all in the AWS IoT Core developer guide:

- "SQL versions" (iot-rule-sql-version): the three versions, 2015-10-08 as the original one,
  and "What's new in the 2016-03-23 SQL rules engine version".
- "SELECT clause" (iot-sql-select): ``SELECT VALUE`` of an array only from 2016-03-23.
- "Nested object queries" (iot-sql-nested-queries): "Supported by SQL version 2016-03-23 and
  later".
- "Literals" (iot-sql-literals): "Literals are available only when using SQL version 2016-03-23
  or later" (object ``{...}`` and array ``[...]`` literals).
- "Functions" (iot-sql-functions), cast(): the keywords ``Decimal``, ``Bool`` and ``Boolean``
  "Additionally, for SQL version 2016-03-23"; and under "Cast to decimal": "With SQL V2
  (2016-03-23), numeric values that are whole numbers, such as 10.0, return an Int value (10)".
- "Functions", isUndefined(): "Supported by SQL version 2016-03-23 and later". Which version
  each *function* needs lives with the function (``rules.sql.functions.Function.versions``);
  the flag below records the documented case the compiler's tests hold the table to.

``beta`` is "the most recent beta SQL version"; AWS documents no difference from 2016-03-23, so
it carries 2016-03-23's flags under its own name (``sql_version()`` returns ``"beta"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final

from rules.sql.errors import RuleSqlError


@dataclass(frozen=True, slots=True)
class SqlVersion:
    """One ``awsIotSqlVersion``: its name and the behaviour that depends on it."""

    name: str
    """As written in the rule and returned by ``sql_version()``."""
    nested_select: bool
    """``(SELECT ... FROM array_attribute [WHERE ...])`` inside a statement
    (iot-sql-nested-queries: 2016-03-23 and later)."""
    literals: bool
    """Object ``{'k': v}`` and array ``[a, b]`` literals (iot-sql-literals: 2016-03-23 and
    later)."""
    is_undefined_fn: bool
    """``isUndefined()`` exists (iot-sql-functions: 2016-03-23 and later)."""
    whole_decimals_as_int: bool
    """Whole-number Decimals such as ``10.0`` come out as the Int ``10`` (iot-sql-functions,
    cast to decimal: "With SQL V2 (2016-03-23) ... return an Int value"). Applied when a value
    leaves the engine (``values.output``), not to intermediate results."""
    cast_decimal_bool: bool
    """``cast(x AS Decimal|Bool|Boolean)`` (iot-sql-functions, cast: "Additionally, for SQL
    version 2016-03-23"); 2015-10-08 knows String, Nvarchar, Text, Ntext, varchar, Int, Integer
    and Double only."""
    select_value_array: bool
    """``SELECT VALUE`` may yield an Array as the top-level payload (iot-rule-sql-version,
    "Output an Array as a top-level object"; iot-sql-select: "With SQL version 2015-10-08, you
    can select only one item"). Under 2015-10-08 a VALUE that is an array produces no
    message."""


V2015_10_08: Final = SqlVersion(
    name="2015-10-08",
    nested_select=False,
    literals=False,
    is_undefined_fn=False,
    whole_decimals_as_int=False,
    cast_decimal_bool=False,
    select_value_array=False,
)
V2016_03_23: Final = SqlVersion(
    name="2016-03-23",
    nested_select=True,
    literals=True,
    is_undefined_fn=True,
    whole_decimals_as_int=True,
    cast_decimal_bool=True,
    select_value_array=True,
)
# AWS documents no difference between beta and 2016-03-23: the same flags under its own name.
BETA: Final = dataclasses.replace(V2016_03_23, name="beta")

VERSIONS: Final[dict[str, SqlVersion]] = {v.name: v for v in (V2015_10_08, V2016_03_23, BETA)}

DEFAULT_VERSION: Final = "2015-10-08"
"""What a rule that omits ``awsIotSqlVersion`` gets (AWS keeps the original version as the
default; the docs recommend 2016-03-23)."""


def get_version(name: str | SqlVersion | None) -> SqlVersion:
    """The version called ``name`` (None: the default, 2015-10-08).

    Raises:
        RuleSqlError: ``name`` is not one of the versions AWS IoT knows.
    """
    if isinstance(name, SqlVersion):
        return name
    if name is None:
        return VERSIONS[DEFAULT_VERSION]
    version = VERSIONS.get(name)
    if version is None:
        valid = ", ".join(VERSIONS)
        # The error points at the version string itself: it is not part of the SQL.
        raise RuleSqlError.at(
            name, (1, 1), f"unknown awsIotSqlVersion {name!r}: use one of {valid}"
        )
    return version
