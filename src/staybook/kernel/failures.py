"""A failed command, told in one line: what failed and why, for an operator rather than a debugger.

`staybook` prints this line instead of a traceback (`--debug` shows the traceback). The service a
failure came from is the innermost library in the traceback that talks to one (a refused connection
is raised by asyncio, called from asyncpg: the database).
"""

from __future__ import annotations

from types import TracebackType

from pydantic import ValidationError

# Top-level package of a client library -> the service it talks to.
SERVICES = {
    "asyncpg": "database",
    "aiosqlite": "database",
    "sqlite3": "database",
    "psycopg": "database",
    "sqlalchemy": "database",
    "alembic": "database",
    "redis": "Redis",
    "nats": "NATS",
    "typesense": "Typesense",
    "botocore": "S3",
    "aiosmtplib": "mail server",
}
# Settings' environment variables: STAYBOOK_ + the field path joined by the nested delimiter.
ENV_PREFIX, ENV_NESTED_DELIMITER = "STAYBOOK_", "__"


def describe(error: BaseException) -> str:
    """One line (no newline) saying what went wrong."""
    if isinstance(error, ValidationError):
        return invalid_settings(error)
    service = service_of(error)
    reason = first_line(root_cause(error))
    if service == "database":
        target = _database_target()
        if isinstance(root_cause(error), OSError | TimeoutError) and not _is_file_error(root_cause(error)):
            return f"cannot connect to the database{target}: {reason}"
        return f"database{target}: {reason}"
    if service is not None:
        return f"{service}: {reason}"
    if _is_file_error(error):
        return f"{error.strerror}: {error.filename}" if error.filename else first_line(error)
    return reason


def invalid_settings(error: ValidationError) -> str:
    if error.title != "Settings":
        return f"invalid {error.title}: " + "; ".join(item["msg"] for item in error.errors())
    problems = []
    for item in error.errors():
        name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(part) for part in item["loc"]).upper()
        problem = f"{name}: {item['msg']}"
        if "input" in item and not isinstance(item["input"], dict):
            problem += f" (got {item['input']!r})"
        problems.append(problem)
    return "invalid setting " + "; ".join(problems)


def service_of(error: BaseException) -> str | None:
    """The service whose client library raised `error` (or a cause of it), if any."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in reversed(chain):  # the innermost cause knows best
        for module in reversed([*_modules(link.__traceback__), type(link).__module__]):
            service = SERVICES.get(module.partition(".")[0])
            if service is not None:
                return service
    return None


def root_cause(error: BaseException) -> BaseException:
    seen = {id(error)}
    while (cause := error.__cause__ or error.__context__) is not None and id(cause) not in seen:
        seen.add(id(cause))
        error = cause
    return error


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return line or type(error).__name__


def _modules(traceback: TracebackType | None) -> list[str]:
    modules = []
    while traceback is not None:
        modules.append(traceback.tb_frame.f_globals.get("__name__", ""))
        traceback = traceback.tb_next
    return modules


def _is_file_error(error: BaseException) -> bool:
    return isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError)


def _database_target() -> str:
    """` <url>` with the password hidden, or nothing when the settings cannot say."""
    try:
        from sqlalchemy.engine import make_url

        from staybook.kernel.settings import Settings

        return " " + make_url(Settings().database_url).render_as_string(hide_password=True)
    except Exception:  # the settings themselves may be what is broken
        return ""
