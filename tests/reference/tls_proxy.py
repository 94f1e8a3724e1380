"""A TLS-terminating proxy on 127.0.0.1 in front of a plain server (a real Triton), for the
remote backend's TLS tests: it presents SERVER_CERT, asks every client for a certificate that
CLIENT_CA signed (mutual TLS; a client without one is turned away in the handshake), offers
HTTP/2 and HTTP/1.1 by ALPN, and passes the decrypted bytes both ways unchanged, so that the
server behind it still checks what it checks (Triton: its access token).

Usage: tls_proxy.py READY_FILE SERVER_CERT SERVER_KEY CLIENT_CA UPSTREAM_HOST:PORT
Writes its port to READY_FILE once listening; stops when the process that started it is gone.
"""
import asyncio
import os
import ssl
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    ready_file, certificate, key, client_ca, upstream = sys.argv[1:6]
    host, port = upstream.rsplit(":", 1)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    context.load_verify_locations(client_ca)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2", "http/1.1"])

    async def serve(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    with open(ready_file + ".part", "w") as f:
        f.write(f"{server.sockets[0].getsockname()[1]}\n")
    os.rename(ready_file + ".part", ready_file)
    parent = os.getppid()
    while os.getppid() == parent:
        await asyncio.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
