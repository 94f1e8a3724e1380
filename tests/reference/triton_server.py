"""A real Triton server (pytriton's tritonserver, CPU) on 127.0.0.1 serving ONNX models through
onnxruntime in Python-backend models, for the remote backend's tests.

Usage: triton_server.py READY_FILE NAME=MODEL.onnx [NAME=MODEL.onnx ...]
Also serves 'slow' (the first model, answering after 3 s) and 'failing' (the first model's
interface, answering with an error). Picks free ports, writes "HTTP_PORT GRPC_PORT" to READY_FILE
once every model is loaded, and stops when the process that started it is gone. Triton's
SageMaker and metrics endpoints stay off (SageMaker's would bind 0.0.0.0).
"""
import os
import socket
import sys
import threading
import time

import numpy as np
import onnxruntime as ort
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tensors(args):
    return [Tensor(name=a.name, dtype=np.float32, shape=tuple(d if isinstance(d, int) else -1 for d in a.shape)) for a in args]


def serving(path, delay=0.0, fail=False):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outputs = session.get_outputs()

    def answer(request):
        if fail:
            raise ValueError("deliberate failure of the test model 'failing'")
        if delay:
            time.sleep(delay)
        results = session.run(None, {name: request[name] for name in names})
        return {o.name: r for o, r in zip(outputs, results)}

    # Without batching pytriton hands over a list of requests and takes a list of answers.
    def infer(requests):
        return [answer(request) for request in requests]

    return infer, tensors(session.get_inputs()), tensors(outputs)


def main():
    ready_file, models = sys.argv[1], [arg.split("=", 1) for arg in sys.argv[2:]]
    parent = os.getppid()
    http_port, grpc_port = free_port(), free_port()
    config = TritonConfig(
        http_address="127.0.0.1", http_port=http_port,
        grpc_address="127.0.0.1", grpc_port=grpc_port,
        allow_metrics=False, allow_sagemaker=False, log_verbose=0,
    )
    with Triton(config=config) as triton:
        first = models[0][1]
        served = [(name, serving(path)) for name, path in models]
        served += [("slow", serving(first, delay=3.0)), ("failing", serving(first, fail=True))]
        for name, (infer, inputs, outputs) in served:
            triton.bind(model_name=name, infer_func=infer, inputs=inputs, outputs=outputs,
                        config=ModelConfig(batching=False))
        triton.run()
        with open(ready_file + ".part", "w") as f:
            f.write(f"{http_port} {grpc_port}\n")
        os.rename(ready_file + ".part", ready_file)
        while os.getppid() == parent:
            time.sleep(0.5)


if __name__ == "__main__":
    main()
