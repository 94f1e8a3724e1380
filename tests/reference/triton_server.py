"""A real Triton server (pytriton's tritonserver, CPU) on 127.0.0.1 serving ONNX models through
onnxruntime in Python-backend models, for the remote backend's tests.

Usage: triton_server.py [--restrict-inference] READY_FILE NAME=MODEL.onnx[@SECONDS] [...]
(--restrict-inference: inference too needs the access token, in the triton-access-token header;
@SECONDS: the model answers each request after that many seconds, a floor on its time that no
machine, however fast, goes under)
Also serves 'slow' (the first model, answering after 3 s), 'slow-once-a' and 'slow-once-b' (the
first model, its first answer after 4 s and the others at once: a server that is briefly
overloaded, one for each protocol's test) and
'failing' (the first model's interface, answering with an error). Picks free ports, writes "HTTP_PORT GRPC_PORT ACCESS_TOKEN"
(the token of the statistics and other restricted endpoints) to READY_FILE
once every model is loaded, and stops when the process that started it is gone. Triton's
SageMaker and metrics endpoints stay off (SageMaker's would bind 0.0.0.0).
"""
import os
import secrets
import signal
import socket
import sys
import threading
import time

import numpy as np
import onnxruntime as ort
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonLifecyclePolicy, TritonSecurityConfig


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The ONNX element types the tests' models have at their edges, as Triton declares them.
DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


def tensors(args):
    return [Tensor(name=a.name, dtype=DTYPES[a.type],
                   shape=tuple(d if isinstance(d, int) else -1 for d in a.shape)) for a in args]


def serving(path, delay=0.0, fail=False, delay_once=0.0):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = session.get_outputs()
    delays_left = [1 if delay_once else 0]

    def answer(request):
        if fail:
            raise ValueError("deliberate failure of the test model 'failing'")
        if delay:
            time.sleep(delay)
        if delays_left[0]:
            delays_left[0] -= 1
            time.sleep(delay_once)
        results = session.run(None, {name: request[name] for name in names})
        return {o.name: r for o, r in zip(outputs, results)}

    # Without batching pytriton hands over a list of requests and takes a list of answers.
    def infer(requests):
        return [answer(request) for request in requests]

    return infer, tensors(session.get_inputs()), tensors(outputs)


def with_library_path():
    """The Python backend's stub loads libpython and pytriton's own libraries: put their folders
    first in LD_LIBRARY_PATH, which only takes effect for a new process, so run again with it."""
    if os.environ.get("NEURALFX_TRITON_LIBRARY_PATH") == "1":
        return
    import sysconfig

    libs = os.path.join(sysconfig.get_paths()["purelib"], "nvidia_pytriton.libs")
    path = [sysconfig.get_config_var("LIBDIR"), libs, os.environ.get("LD_LIBRARY_PATH", "")]
    os.environ["LD_LIBRARY_PATH"] = ":".join(p for p in path if p)
    os.environ["NEURALFX_TRITON_LIBRARY_PATH"] = "1"
    os.execv(sys.executable, [sys.executable] + sys.argv)


def model_argument(argument):
    """NAME=MODEL.onnx[@SECONDS] as (name, path, delay in seconds)."""
    name, path = argument.split("=", 1)
    path, _, delay = path.partition("@")
    return name, path, float(delay or 0.0)


def main():
    with_library_path()
    # A process group of its own: SIGTERM (a test stopping the server mid-stream) ends the whole
    # group at once, tritonserver and its Python-backend stubs included, none left orphaned.
    os.setpgrp()
    signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
    arguments = sys.argv[1:]
    # Inference behind the access token too: a client must send Triton's restricted-API header.
    restrict_inference = arguments[0] == "--restrict-inference"
    if restrict_inference:
        arguments = arguments[1:]
    ready_file, models = arguments[0], [model_argument(arg) for arg in arguments[1:]]
    parent = os.getppid()
    http_port, grpc_port = free_port(), free_port()
    config = TritonConfig(
        http_address="127.0.0.1", http_port=http_port,
        grpc_address="127.0.0.1", grpc_port=grpc_port,
        allow_metrics=False, allow_sagemaker=False, log_verbose=0,
    )
    # Statistics and the other administrative endpoints stay behind a token, as pytriton sets
    # them; the benchmark reads statistics with it.
    restricted = TritonSecurityConfig().restricted_endpoints
    if restrict_inference:
        restricted.append("inference")
    security = TritonSecurityConfig(access_token=secrets.token_urlsafe(16),
                                    restricted_endpoints=restricted)
    # Triton started once every model is bound, with the models in a local store: it loads
    # them side by side at start (each load starts a Python-backend stub and waits for it,
    # mostly idle), where pytriton's default loads each as it is bound, one after another.
    policy = TritonLifecyclePolicy(launch_triton_on_startup=False, local_model_store=True)
    with Triton(config=config, security_config=security, triton_lifecycle_policy=policy) as triton:
        first = models[0][1]
        served = [(name, serving(path, delay=delay)) for name, path, delay in models]
        served += [("slow", serving(first, delay=3.0)), ("failing", serving(first, fail=True)),
                   ("slow-once-a", serving(first, delay_once=4.0)),
                   ("slow-once-b", serving(first, delay_once=4.0))]
        for name, (infer, inputs, outputs) in served:
            triton.bind(model_name=name, infer_func=infer, inputs=inputs, outputs=outputs,
                        config=ModelConfig(batching=False))
        triton.run()
        with open(ready_file + ".part", "w") as f:
            f.write(f"{http_port} {grpc_port} {security.access_token}\n")
        os.rename(ready_file + ".part", ready_file)
        while os.getppid() == parent:
            time.sleep(0.5)


if __name__ == "__main__":
    main()
