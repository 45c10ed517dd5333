"""Fan-out peer of `protolab-bench hub`: the story's own ServerApp, a Flask-SocketIO app.

`GET /notifs?msg=TEXT` emits the socket.io event `newmessage` `{message: TEXT}` to every
connected client, as the story's app does. It runs in Flask-SocketIO's gevent mode (with
gevent-websocket), the production server its documentation recommends that comes from PyPI
alone (eventlet, the other, is no longer maintained). Binds 127.0.0.1 and prints `listening`.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")


@app.get("/notifs")
def notifs():
    socketio.emit("newmessage", {"message": request.args.get("msg", "")})
    return "accepted\n", 202


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    print("listening", flush=True)
    socketio.run(app, host="127.0.0.1", port=args.port, log_output=False)


if __name__ == "__main__":
    main()
