#!/usr/bin/env python3
"""A plain TCP port that forwards every byte over TLS: Autobahn's client (kosoku 0.1.0) speaks
only ws://, so `.ci/autobahn --tls` points it at this relay, which opens a TLS connection to
the echo server for each client connection and copies bytes both ways, unchanged.

    tls_relay.py TARGET_HOST:PORT CA_FILE

Prints `relay listening on ws://127.0.0.1:PORT/` once it listens. The TLS side checks the
echo server's certificate against CA_FILE for the name `localhost`. When either side ends its
stream, the relay ends the other (TLS: close_notify, then the socket is closed).
"""

import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(256 * 1024)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        try:
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError, OSError):
            pass


async def main():
    target, ca_file = sys.argv[1], sys.argv[2]
    host, port = target.rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])

    async def serve(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(
                host, int(port), ssl=context, server_hostname="localhost"
            )
        except (ConnectionError, ssl.SSLError, OSError) as e:
            print(f"relay: cannot reach {target}: {e}", file=sys.stderr, flush=True)
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer), pipe(server_reader, client_writer)
        )

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    relay_port = server.sockets[0].getsockname()[1]
    print(f"relay listening on ws://127.0.0.1:{relay_port}/", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
