"""Files as steps: ``reader(...)`` reads a file into ``data``, ``writer(...)`` writes
``data`` to a file (atomically by default, or appending whole records). I/O goes through
aiofiles so the event loop never waits on the disk. Needs ``pip install
"asyncdataflow[files]"``. See docs/files.md.
"""

from .._errors import StepArgumentError
from .._extras import needs

with needs("files", "aiofiles"):  # before the modules that import it
    import aiofiles  # noqa: F401

from ._chunks import CHUNK_FORMATS
from ._durable import FileCheckpoints, FileDeadLetters, checkpoints, dead_letters
from ._formats import FORMATS
from ._paths import FilesArgumentError, PathOutsideBaseDirError
from ._steps import MODES, ChunkedReader, Reader, Writer, clean_temp_files, reader, writer

__all__ = [
    "CHUNK_FORMATS",
    "FORMATS",
    "MODES",
    "ChunkedReader",
    "FileCheckpoints",
    "FileDeadLetters",
    "FilesArgumentError",
    "PathOutsideBaseDirError",
    "Reader",
    "StepArgumentError",
    "Writer",
    "checkpoints",
    "clean_temp_files",
    "dead_letters",
    "reader",
    "writer",
]
