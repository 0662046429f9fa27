"""Find a ``tritonserver`` and run it for the duration of a ``with`` block.

The server is found through a Python that has ``nvidia-pytriton`` (the triton env,
``make triton-venv``; ``CK_TRITON_PYTHON``) or a ``tritonserver`` binary given directly
(``CK_TRITON_SERVER``, e.g. inside NVIDIA's container, whose backends then serve).
A started server gets free ports (or the given ones, checked first), its log in the
run's directory, a bounded wait for readiness, and is always stopped: SIGTERM to its
process group, SIGKILL after a bound, and the kernel kills it if we die first
(``PR_SET_PDEATHSIG``). Python-backend shared-memory files it left in ``/dev/shm``
are removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import cast

from ckvision.errors import BackendError, ConfigError

__all__ = ["TritonInstall", "TritonServer", "find_triton", "free_port", "free_ports", "LOG_NAME"]

LOG_NAME = "tritonserver.log"
EXIT_TIMEOUT_S = 5
_SHM_GLOB = "triton_python_backend_shm_region_*"
PORT_ATTEMPTS = 3  # ports we chose and lost to another process before the server bound them
# what tritonserver logs when it cannot have its ports: taken, or two of them the same
_PORT_LOST = ("already in use", "at the same address and port")
_PROBE = (
    "import os,sys,sysconfig,numpy,pytriton;"
    "print(pytriton.__path__[0]);print(sysconfig.get_config_var('LIBDIR'));"
    "print(os.path.dirname(sys.executable));print('%d.%d'%sys.version_info[:2]);"
    "print(numpy.__version__)"
)
_FIX = "create it with `make triton-venv` and set CK_TRITON_PYTHON=.venv-triton/bin/python"


@dataclass(frozen=True)
class TritonInstall:
    """Where the server binary and what it needs live."""

    server: Path  # bin/tritonserver
    backends: Path | None  # python backend files to copy (pytriton), None = server's own
    stub: Path | None  # triton_python_backend_stub for the env's Python
    env: dict[str, str]  # PATH / LD_LIBRARY_PATH additions
    libs: Path | None = None  # nvidia_pytriton.libs (perf_analyzer needs some of them)
    bindir: Path | None = None  # the triton env's bin (perf_analyzer lives there)


def foreign_python_env() -> dict[str, str]:
    """Our environment for the triton env's interpreter and the server it starts: another
    Python (numpy < 2), so never our PYTHONPATH (a CK env entry puts our venv's
    site-packages there; numpy 2 in the Python backend corrupts tensors)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def find_triton(python: str = "", server: str = "") -> TritonInstall:
    """The server of a triton env's Python, or a ``tritonserver`` binary; one line if neither."""
    if server:
        path = Path(server)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BackendError(f"CK_TRITON_SERVER={server}: no executable tritonserver there")
        return TritonInstall(path, None, None, {})
    python = python or _default_python()
    try:
        probe = subprocess.run(  # noqa: S603 - argument list, no shell
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            env=foreign_python_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BackendError(
            f"Triton server not installed: cannot run {python} ({err}); {_FIX}"
        ) from err
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["failed"])[-1]
        raise BackendError(f"Triton server not installed in {python} ({last}); {_FIX}")
    pkg, libdir, bindir, version, numpy_version = probe.stdout.split()
    if int(numpy_version.split(".")[0]) >= 2:
        raise BackendError(
            f"the triton env {python} has numpy {numpy_version}: Triton's "
            f"Python backend 2.51 corrupts tensors with numpy 2; {_FIX}"
        )
    root = Path(pkg) / "tritonserver"
    libs = Path(pkg).parent / "nvidia_pytriton.libs"
    return TritonInstall(
        server=root / "bin" / "tritonserver",
        backends=root / "backends" / "python",
        stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
        env={"PATH": bindir, "LD_LIBRARY_PATH": f"{libdir}{os.pathsep}{libs}"},
        libs=libs,
        bindir=Path(bindir),
    )


def _default_python() -> str:
    """The checkout's ``.venv-triton`` (``make triton-venv``) if there, else ``python3``."""
    local = Path(__file__).resolve().parents[2] / ".venv-triton" / "bin" / "python"
    return str(local) if local.is_file() else (shutil.which("python3") or "python3")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> tuple[int, ...]:
    """``count`` distinct ports free now, bound all at once: a port bound and closed may be
    handed out again by the next bind, and tritonserver refuses HTTP and gRPC on one port
    ("cannot listen to HTTP requests and GRPC requests at the same address and port")."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return tuple(int(sock.getsockname()[1]) for sock in socks)


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            raise ConfigError(
                f"port {port} is in use; choose another Triton port or "
                "leave it empty for a free one"
            ) from None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _remove_orphan_regions(paths: set[Path], older_than_s: float = 0.0) -> None:
    """Delete the Python backend's shared-memory files that no live process maps.

    ``older_than_s`` spares regions a server starting right now has made but not mapped.
    """
    if older_than_s:
        now = time.time()
        paths = {p for p in paths if _age(p, now) > older_than_s}
    if not paths:
        return
    mapped: set[str] = set()
    for maps in Path("/proc").glob("[0-9]*/maps"):
        with contextlib.suppress(OSError):
            mapped.update(
                ln.rsplit(" ", 1)[-1] for ln in maps.read_text().splitlines() if "/dev/shm/" in ln
            )
    for path in paths:
        if str(path) not in mapped:
            with contextlib.suppress(OSError):
                path.unlink()


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TritonServer:
    """A ``tritonserver`` we started; ``with TritonServer(...) as s: s.http_url``."""

    def __init__(
        self,
        install: TritonInstall,
        repository: Path,
        log_dir: Path,
        ports: tuple[int, int, int] | None = None,
        ready_timeout_s: float = 60.0,
        models: tuple[str, ...] = (),
    ) -> None:
        self.install = install
        self.repository = Path(repository)
        self.log_path = Path(log_dir) / LOG_NAME
        self.ports = ports
        self.ready_timeout_s = ready_timeout_s
        self.models = models
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self._shm_before: set[Path] = set()
        self._log_from = 0

    @property
    def http_url(self) -> str:
        assert self.ports is not None, "server not started"
        return f"127.0.0.1:{self.ports[0]}"

    @property
    def grpc_url(self) -> str:
        assert self.ports is not None, "server not started"
        return f"127.0.0.1:{self.ports[1]}"

    def url(self, protocol: str) -> str:
        return self.grpc_url if protocol == "grpc" else self.http_url

    def _backend_dir(self) -> list[str]:
        if self.install.backends is None:
            return []
        self._tmp = Path(tempfile.mkdtemp(prefix="ckvision-triton-"))
        python = self._tmp / "backends" / "python"
        python.mkdir(parents=True)
        for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(self.install.backends / name, python)
        if self.install.stub is None or not self.install.stub.is_file():
            raise BackendError(f"no Python-backend stub for this Python at {self.install.stub}")
        shutil.copy2(self.install.stub, python)
        return [f"--backend-directory={self._tmp / 'backends'}"]

    def _environ(self) -> dict[str, str]:
        env = foreign_python_env()
        for key, value in self.install.env.items():
            env[key] = value + (os.pathsep + env[key] if env.get(key) else "")
        return env

    def start(self) -> TritonServer:
        if not (self.repository.is_dir() and any(self.repository.glob("*/config.pbtxt"))):
            raise ConfigError(
                f"{self.repository} is not a Triton model repository (no <model>/config.pbtxt)"
            )
        chosen = self.ports is None  # ours to choose again if another process takes one
        for attempt in range(1, PORT_ATTEMPTS + 1):
            if chosen:
                self.ports = cast(tuple[int, int, int], free_ports(3))
            try:
                self._start_once()
                return self
            except (ConfigError, BackendError) as err:
                lost = isinstance(err, ConfigError) or any(
                    mark in self._log_text() for mark in _PORT_LOST
                )
                if not (chosen and lost and attempt < PORT_ATTEMPTS):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self) -> None:
        assert self.ports is not None
        for port in self.ports:
            _check_port_free(port)
        # a server killed outright (SIGKILL, OOM) leaves its 1 MiB regions: clear old ones
        _remove_orphan_regions(set(Path("/dev/shm").glob(_SHM_GLOB)), older_than_s=60.0)
        self._shm_before = set(Path("/dev/shm").glob(_SHM_GLOB))
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.install.server),
            f"--model-repository={self.repository}",
            *self._backend_dir(),
            "--disable-auto-complete-config",
            *(
                f"--{k}-port={p}"
                for k, p in zip(("http", "grpc", "metrics"), self.ports, strict=True)
            ),
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}",
            "--log-verbose=0",
        ]
        with open(self.log_path, "ab") as log:
            self._log_from = log.tell()  # this start's part of the log
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
                args,
                env=self._environ(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _log_text(self) -> str:
        """What this start of the server has logged (the log file is appended to)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_from)
                return log.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _log_tail(self) -> str:
        """The line that says why the server stopped: its last error line; for a command
        line it refused, the reason printed before or after its usage text (whose option
        help mentions "error" too)."""
        lines = self._log_text().splitlines()
        usage = next(
            (i for i, ln in enumerate(lines) if ln.startswith("Usage: tritonserver")), None
        )
        if usage is not None:
            last_help = max(i for i, ln in enumerate(lines) if ln[:1] in (" ", "\t") or i == usage)
            reason = [ln.strip() for ln in lines[:usage] + lines[last_help + 1 :] if ln.strip()]
            return (" ".join(reason) or "tritonserver refused its command line")[:300]
        errors = [ln for ln in lines if ln.startswith("E") or "error" in ln.lower()]
        return (errors or lines or ["empty log"])[-1].strip()[:300]

    def _wait_ready(self) -> None:
        assert self.proc is not None
        url = f"http://{self.http_url}/v2/health/ready"
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self.proc.poll() is not None:
                raise BackendError(
                    f"tritonserver exited with status {self.proc.returncode} "
                    f"while starting: {self._log_tail()} (log: {self.log_path})"
                )
            with contextlib.suppress(urllib.error.URLError, OSError):
                with _NO_PROXY.open(url, timeout=1.0) as response:
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                raise BackendError(
                    f"tritonserver not ready within {self.ready_timeout_s:g} s: "
                    f"{self._log_tail()} (log: {self.log_path})"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server and everything it started; idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(EXIT_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):  # stubs left in the group
                os.killpg(proc.pid, signal.SIGKILL)
        _remove_orphan_regions(set(Path("/dev/shm").glob(_SHM_GLOB)) - self._shm_before)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
