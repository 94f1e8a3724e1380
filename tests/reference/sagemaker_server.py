"""A SageMaker runtime stand-in on 127.0.0.1 for the sagemaker backend's tests: it speaks
InvokeEndpoint (POST /endpoints/NAME/invocations), checks every request's SigV4 signature with
botocore's signer against the test credentials, and

- forwards Triton binary+json tensor requests to a real Triton server's HTTP endpoint (the
  endpoint name is the served model; SageMaker's json-header-size content-type parameter becomes
  Inference-Header-Content-Length and back), as a Triton-based SageMaker endpoint does;
- answers image/png and image/jpeg requests with rembg's u2netp mask (a greyscale PNG, an RGBA
  cutout, or raw uint8 / float32 values, by endpoint name), as a custom rembg container would;
- answers with AWS-shaped errors (x-amzn-ErrorType) where real SageMaker does: ModelError with the
  container's status and message, ValidationError for an endpoint it does not have, and, for
  endpoints named 'throttled-once-*', one ThrottlingException before serving them;
- routes as SageMaker does: endpoint 'multi-model' serves the Triton model its TargetModel names
  (less '.tar.gz') and refuses a request without one; endpoint 'components' serves the model its
  InferenceComponentName names; a TargetVariant other than 'AllTraffic' is a ValidationError
  naming it; endpoint 'needs-attributes' serves u2netp only to requests whose CustomAttributes are
  'tenant=acme' (a ModelError from the container otherwise).

Usage: sagemaker_server.py READY_FILE TRITON_HTTP ACCESS_KEY SECRET_KEY REGION
Writes its port to READY_FILE once listening; stops when the process that started it is gone.
moto cannot stand in here: its InvokeEndpoint fails on binary bodies.
"""
import hmac
import io
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TRITON_BINARY_JSON = "application/vnd.sagemaker-triton.binary+json"
AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)"
    r"/aws4_request, ?SignedHeaders=(?P<headers>[^,]+), ?Signature=(?P<signature>[0-9a-f]+)")


def signature_problem(method, path, headers, body, access_key, secret_key, region):
    """None when the request carries a valid SigV4 signature of the test credentials, else why."""
    match = AUTHORIZATION.fullmatch(headers.get("Authorization", ""))
    if not match:
        return "no SigV4 Authorization header"
    if match["key"] != access_key:
        return f"unknown access key {match['key']}"
    if match["region"] != region or match["service"] != "sagemaker":
        return f"signed for {match['service']} in {match['region']}"
    signed = match["headers"].split(";")
    request = AWSRequest(method=method, url=f"http://{headers['Host']}{path}",
                         headers={name: headers[name] for name in signed if name in headers},
                         data=body)
    request.context["timestamp"] = headers.get("X-Amz-Date", "")
    signer = SigV4Auth(Credentials(access_key, secret_key, headers.get("X-Amz-Security-Token")),
                       "sagemaker", region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, match["signature"]):
        return "the request signature does not match"
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, content_type, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, error_type, message, **fields):
        body = json.dumps({"message": message, **fields}).encode()
        self.answer(status, body, "application/json", [("x-amzn-ErrorType", error_type)])

    def do_POST(self):
        server = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        problem = signature_problem("POST", self.path, self.headers, body, server.access_key,
                                    server.secret_key, server.region)
        if problem:
            return self.error(403, "InvalidSignatureException", problem)
        match = re.fullmatch(r"/endpoints/([^/]+)/invocations", self.path)
        if not match:
            return self.error(404, "UnknownOperationException", f"no operation at {self.path}")
        endpoint = match[1]
        if endpoint.startswith("throttled-once-"):
            with server.lock:
                first = endpoint not in server.throttled
                server.throttled.add(endpoint)
            if first:
                return self.error(400, "ThrottlingException", "Rate exceeded")
            endpoint = "u2netp"
        endpoint, refusal = self.route(endpoint)
        if refusal:
            return refusal()
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith(TRITON_BINARY_JSON):
            return self.forward_to_triton(endpoint, content_type, body)
        if content_type in ("image/png", "image/jpeg"):
            return self.mask_of_image(endpoint, body)
        return self.error(424, "ModelError", "Received client error (415) from primary",
                          OriginalStatusCode=415,
                          OriginalMessage=f"unsupported content type {content_type}")

    def route(self, endpoint):
        """The model that answers, as SageMaker's routing headers pick it, or a refusal."""
        target_model = self.headers.get("X-Amzn-SageMaker-Target-Model")
        component = self.headers.get("X-Amzn-SageMaker-Inference-Component")
        variant = self.headers.get("X-Amzn-SageMaker-Target-Variant")
        attributes = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if variant is not None and variant != "AllTraffic":
            return endpoint, lambda: self.error(
                400, "ValidationError",
                f"Endpoint {endpoint} of account 000000000000 has no variant {variant}.")
        if endpoint == "multi-model":
            if not target_model:
                return endpoint, lambda: self.error(
                    400, "ValidationError", "TargetModel is required for a multi-model endpoint")
            return target_model.removesuffix(".tar.gz"), None
        if endpoint == "components":
            if not component:
                return endpoint, lambda: self.error(
                    400, "ValidationError", "Inference Component Name header is required")
            return component, None
        if endpoint == "needs-attributes":
            if attributes != "tenant=acme":
                return endpoint, lambda: self.error(
                    424, "ModelError", "Received client error (403) from primary",
                    OriginalStatusCode=403, OriginalMessage=f"unknown tenant: {attributes}")
            return "u2netp", None
        return endpoint, None

    def forward_to_triton(self, endpoint, content_type, body):
        header_size = re.search(r"json-header-size=(\d+)", content_type)
        headers = {"Content-Type": "application/octet-stream"}
        if header_size:
            headers["Inference-Header-Content-Length"] = header_size[1]
        request = urllib.request.Request(
            f"http://{self.server.triton}/v2/models/{endpoint}/infer", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = response.read()
                header_len = response.headers.get("Inference-Header-Content-Length")
        except urllib.error.HTTPError as e:
            message = e.read().decode(errors="replace")
            if "unknown model" in message:
                return self.error(400, "ValidationError",
                                  f"Endpoint {endpoint} of account 000000000000 not found.")
            return self.error(424, "ModelError",
                              f"Received client error ({e.code}) from primary with message "
                              f"\"{message}\"", OriginalStatusCode=e.code, OriginalMessage=message)
        answer_type = TRITON_BINARY_JSON if header_len else "application/json"
        if header_len:
            answer_type += f";json-header-size={header_len}"
        self.answer(200, answer, answer_type)

    def mask_of_image(self, endpoint, body):
        """Endpoints 'rembg-u2netp' (a greyscale PNG mask), '...-cutout' (rembg's RGBA cutout:
        the alpha is the mask), '...-raw8' and '...-raw32' (the mask's values as raw uint8 or
        float32 of the picture's size, application/octet-stream), and '...-json' (a JSON answer
        that is no mask, as a misconfigured container gives)."""
        import numpy as np
        from PIL import Image
        from rembg import remove
        base, _, form = endpoint.partition("-u2netp")
        if base != "rembg" or form not in ("", "-cutout", "-raw8", "-raw32", "-json"):
            return self.error(400, "ValidationError",
                              f"Endpoint {endpoint} of account 000000000000 not found.")
        if form == "-json":
            return self.answer(200, b'{"predictions": []}', "application/json")
        image = Image.open(io.BytesIO(body)).convert("RGB")
        mask = remove(image, session=self.server.session, only_mask=True)
        if form == "-raw8":
            return self.answer(200, np.asarray(mask, np.uint8).tobytes(), "application/octet-stream")
        if form == "-raw32":
            values = (np.asarray(mask, np.float32) / 255).astype("<f4")
            return self.answer(200, values.tobytes(), "application/octet-stream")
        picture = image.convert("RGBA") if form == "-cutout" else mask
        if form == "-cutout":
            picture.putalpha(mask)
        out = io.BytesIO()
        picture.save(out, format="PNG")
        self.answer(200, out.getvalue(), "image/png")


def main():
    ready_file, triton, access_key, secret_key, region = sys.argv[1:6]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.triton, server.access_key, server.secret_key, server.region = (
        triton, access_key, secret_key, region)
    server.lock, server.throttled = threading.Lock(), set()
    from rembg import new_session
    server.session = new_session("u2netp")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(ready_file + ".part", "w") as f:
        f.write(f"{server.server_address[1]}\n")
    os.rename(ready_file + ".part", ready_file)
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
