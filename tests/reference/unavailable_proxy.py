"""An HTTP/1.1 proxy on 127.0.0.1 in front of a real Triton's HTTP endpoint, for the remote
backend's retry test: it answers the first REFUSE inference requests (POST .../infer) with
503 Service Unavailable and `Retry-After: SECONDS`, as a gateway or an overloaded server does,
and forwards every other request unchanged. Each inference request is logged to LOG_FILE as a
JSON line: {"at": seconds since the epoch, "answer": "refused" | "forwarded"}.

Usage: unavailable_proxy.py READY_FILE UPSTREAM_HOST:PORT REFUSE SECONDS LOG_FILE
Writes its port to READY_FILE once listening; stops when the process that started it is gone.
"""
import http.client
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host"}


def main():
    ready_file, upstream, refuse, seconds, log_file = sys.argv[1:6]
    host, port = upstream.rsplit(":", 1)
    state = {"refuse": int(refuse)}
    lock = threading.Lock()

    def log(answer):
        with lock, open(log_file, "a") as log:
            log.write(json.dumps({"at": time.time(), "answer": answer}) + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def forward(self, body):
            connection = http.client.HTTPConnection(host, int(port), timeout=600)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            connection.close()

        def do_GET(self):
            self.forward(None)

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.endswith("/infer"):
                with lock:
                    refused = state["refuse"] > 0
                    state["refuse"] -= refused
                log("refused" if refused else "forwarded")
                if refused:
                    message = json.dumps({"error": "the server is busy"}).encode()
                    self.send_response(503)
                    self.send_header("Retry-After", seconds)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    return
            self.forward(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(ready_file + ".tmp", "w") as ready:
        ready.write(str(server.server_address[1]))
    os.rename(ready_file + ".tmp", ready_file)
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.5)


if __name__ == "__main__":
    main()
