"""The baseline of the serving rows: KServe's own Python model server with a custom ``kserve.Model``
wrapping onnxruntime on the same ONNX file, installed in its own virtualenv (bench/.venv-kserve) so
that kserve's dependencies never touch the development environment.

Run as a script inside that venv, it is the server (``python bench/serve/baseline.py MODEL.onnx --port P``:
the one file of bench/ not run as ``python -m bench...``, because it runs in KServe's environment, without
slimkit); imported (``bench.serve.baseline``), :func:`ensure_venv` creates the venv and :func:`command` says
how to start the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KSERVE_PINS = ["kserve==0.21.0", "onnxruntime==1.32.0", "numpy==2.4.6"]
VENV = Path(__file__).resolve().parents[1] / ".venv-kserve"  # bench/.venv-kserve (git-ignored)


def ensure_venv(log=print) -> Path:
    """Create bench/.venv-kserve with the pinned kserve (once); return its python."""
    py = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == " ".join(KSERVE_PINS):
        return py
    log(f"creating {VENV} with {' '.join(KSERVE_PINS)} (once; a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", *KSERVE_PINS], check=True)
    stamp.write_text(" ".join(KSERVE_PINS))
    return py


def command(onnx_path: str | os.PathLike, port: int, name: str, threads: int = 1) -> list[str]:
    """The command line that serves ``onnx_path`` as model ``name`` with KServe on ``port``."""
    return [str(VENV / "bin" / "python"), __file__, os.fspath(onnx_path), "--port", str(port), "--name", name,
            "--threads", str(threads)]


def _serve() -> None:  # runs inside the kserve venv: no slimkit import
    import argparse

    import kserve
    import onnxruntime as ort
    from kserve import InferOutput, InferRequest, InferResponse

    p = argparse.ArgumentParser()
    p.add_argument("onnx")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--threads", type=int, default=1)
    a, _ = p.parse_known_args()

    class OnnxModel(kserve.Model):
        """KServe's custom-model pattern (load + predict on v2 InferRequest/InferResponse)."""

        def __init__(self, name: str, path: str, threads: int):
            super().__init__(name)
            self.path, self.threads = path, threads
            self.load()

        def load(self) -> bool:
            # the same session options as slimkit's backend (runtime.backends.session_options)
            so = ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self.sess = ort.InferenceSession(self.path, so, providers=["CPUExecutionProvider"])
            self.input = self.sess.get_inputs()[0].name
            self.outputs = [o.name for o in self.sess.get_outputs()]
            self.ready = True
            return True

        def predict(self, payload: InferRequest, headers=None) -> InferResponse:
            x = payload.inputs[0].as_numpy()
            ys = self.sess.run(self.outputs, {self.input: x})
            outs = []
            for name, y in zip(self.outputs, ys):
                o = InferOutput(name=name, shape=list(y.shape), datatype="FP32")
                o.set_data_from_numpy(y, binary_data=False)
                outs.append(o)
            return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outs)

    # KServe's fastest settings for a fair comparison: no gRPC, no per-request latency log line
    kserve.ModelServer(http_port=a.port, enable_grpc=False, enable_latency_logging=False, workers=1).start(
        [OnnxModel(a.name, a.onnx, a.threads)])


if __name__ == "__main__":
    _serve()
