"""The LoadGen harness: QSL, one SUT per scenario, settings and user.conf, the run."""

from ckvision.harness.logs import parse_output_dir
from ckvision.harness.qsl import SampleLibrary
from ckvision.harness.run import RunResult, run_benchmark
from ckvision.harness.settings import build_test_settings, write_audit_config, write_user_conf
from ckvision.harness.sut import make_sut

__all__ = [
    "RunResult",
    "SampleLibrary",
    "build_test_settings",
    "make_sut",
    "parse_output_dir",
    "run_benchmark",
    "write_audit_config",
    "write_user_conf",
]
