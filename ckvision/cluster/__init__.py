"""Sweeps on a Ray cluster: each point a Ray task on a node, recorded on the driver.

``ckvision sweep batch|concurrency|peak --cluster ADDRESS`` comes here
(:mod:`.command`). :mod:`.runner` is the driver (tasks, isolation, faults, recording),
:mod:`.node` what a task does on a node, :mod:`.child` the point's own process,
:mod:`.bundle` the model and dataset shipped through Ray's object store. Ray is an
optional extra (``pip install 'ckvision[cluster]'``), imported only when used.
"""

from ckvision.cluster.connection import check_address, connect
from ckvision.cluster.runner import SLOT, ClusterPointRunner, NodePoint

__all__ = ["ClusterPointRunner", "NodePoint", "SLOT", "check_address", "connect"]
