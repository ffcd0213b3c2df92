"""dask TLS for multi-node runs (docs/pipeline/operations.md): with certificates in the
dask config, the pipeline's client talks to a TLS scheduler and worker; a plain-TCP
client gets nowhere. Certificates are made here with openssl (self-signed CA)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is absent")


def _certs(d: Path) -> dict[str, str]:
    """A CA, and one key + certificate signed by it for scheduler, workers and client."""
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=dsa110", "-keyout", "node.key",
        "-out", "node.csr")
    ssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-out", "node.pem")
    return {"ca": str(d / "ca.pem"), "cert": str(d / "node.pem"), "key": str(d / "node.key")}


def test_pipeline_client_uses_tls_from_dask_config(tmp_path: Path) -> None:
    import dask
    from distributed import Client, LocalCluster
    from distributed.security import Security

    from dsa110_pipeline.cluster import ClientHandle
    from dsa110_pipeline.config import OrchestratorConfig

    c = _certs(tmp_path)
    sec = Security(tls_ca_file=c["ca"], tls_scheduler_cert=c["cert"],
                   tls_scheduler_key=c["key"], tls_worker_cert=c["cert"],
                   tls_worker_key=c["key"], tls_client_cert=c["cert"], tls_client_key=c["key"],
                   require_encryption=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tls://",
                      security=sec, dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        # what operations.md tells the operator to put in the dask config (or DASK_ env)
        tls = {"distributed.comm.require-encryption": True,
               "distributed.comm.tls.ca-file": c["ca"],
               "distributed.comm.tls.client.cert": c["cert"],
               "distributed.comm.tls.client.key": c["key"]}
        with dask.config.set(tls), ClientHandle(OrchestratorConfig(scheduler=address)) as h:
            assert h.get().submit(sum, [1, 2, 3]).result(timeout=30) == 6
        # no certificates: no connection (plain TCP to a TLS port, or TLS without a cert)
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout="3s")
        with pytest.raises((OSError, TimeoutError, TypeError, ValueError)):
            Client(address, timeout="3s")
