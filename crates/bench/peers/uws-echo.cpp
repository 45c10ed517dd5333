// Bench peer: a WebSocket echo server on uWebSockets, built by scripts/build-uws-peer (never
// committed: only this file is ours).
//
//   uws-echo PORT              plain ws:// on 127.0.0.1:PORT
//   uws-echo-tls PORT CERT KEY wss:// (a build against uSockets WITH_OPENSSL=1)
//
// Echoes every text and binary message on `/` and `/ws`, prints `listening` once bound, serves
// until killed. Idle connections stay open for 960 s (uWS's longest idle timeout) and the
// server sends no pings, so an idle-memory run measures held connections, not reconnects.
// No permessage-deflate: the bench's clients do not offer it.

#include "App.h"

#include <cstdio>
#include <cstdlib>
#include <string>

struct PerSocketData {};

template <typename AppType>
static typename AppType::template WebSocketBehavior<PerSocketData> echo_behavior() {
    typename AppType::template WebSocketBehavior<PerSocketData> behavior = {};
    behavior.compression = uWS::DISABLED;
    behavior.maxPayloadLength = 16 * 1024 * 1024;
    behavior.idleTimeout = 960;
    behavior.maxBackpressure = 64 * 1024 * 1024;
    behavior.closeOnBackpressureLimit = false;
    behavior.resetIdleTimeoutOnSend = true;
    behavior.sendPingsAutomatically = false;
    behavior.message = [](auto *ws, std::string_view message, uWS::OpCode opCode) {
        ws->send(message, opCode, false);
    };
    return behavior;
}

template <typename AppType>
static int serve(AppType app, int port) {
    bool listening = false;
    app.template ws<PerSocketData>("/", echo_behavior<AppType>());
    app.template ws<PerSocketData>("/ws", echo_behavior<AppType>());
    app.listen("127.0.0.1", port, [&listening](auto *socket) {
        if (socket) {
            listening = true;
            std::printf("listening\n");
            std::fflush(stdout);
        }
    });
    if (!listening) {
        std::fprintf(stderr, "uws-echo: cannot listen on 127.0.0.1:%d\n", port);
        return 1;
    }
    app.run();
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 4) {
        std::fprintf(stderr, "usage: %s PORT [CERT_PEM KEY_PEM]\n", argv[0]);
        return 2;
    }
    int port = std::atoi(argv[1]);
    if (port <= 0 || port > 65535) {
        std::fprintf(stderr, "uws-echo: bad port `%s`\n", argv[1]);
        return 2;
    }
    if (argc == 4) {
#ifdef LIBUS_NO_SSL
        std::fprintf(stderr, "uws-echo: built without TLS; use the uws-echo-tls binary\n");
        return 2;
#else
        uWS::SocketContextOptions options = {};
        options.cert_file_name = argv[2];
        options.key_file_name = argv[3];
        return serve(uWS::SSLApp(options), port);
#endif
    }
    return serve(uWS::App(), port);
}
