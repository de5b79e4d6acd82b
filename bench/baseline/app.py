"""The OLD chat service's design, rebuilt for benchmarking chatd against it (see README.md).

Its performance defects are kept ON PURPOSE: the blocking user lookup inside the async
handler, the whole history in one document ($push into an array), all of it sent on every
connect, one event loop (a single uvicorn worker). Do not fix them here; chatd is the fix.
"""

import contextlib
import os

import requests
import uvicorn
from dotenv import load_dotenv
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo.errors import DuplicateKeyError
from starlette.websockets import WebSocketDisconnected

load_dotenv()
MONGO_URI = os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27017/CatalogServiceDB")
USER_SEARCH_URL = os.environ.get("USER_SEARCH_URL", "")  # empty: every user exists

client = AsyncIOMotorClient(MONGO_URI)
db = client.get_default_database("CatalogServiceDB")  # the database is the URI's path
chats = db["chats"]


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI):
    # The one index the queries need (and what keeps two concurrent upserts of a new
    # chat from creating two documents).
    await chats.create_index("chat_id", unique=True)
    yield


app = FastAPI(lifespan=lifespan)


class ConnectionManager:
    def __init__(self) -> None:
        self.active_connections: dict[str, list[WebSocket]] = {}

    async def connect(self, chat_id: str, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.setdefault(chat_id, []).append(websocket)

    def disconnect(self, chat_id: str, websocket: WebSocket) -> None:
        connections = self.active_connections.get(chat_id, [])
        if websocket in connections:
            connections.remove(websocket)
        if not connections:
            self.active_connections.pop(chat_id, None)

    async def broadcast(self, chat_id: str, message: dict, sender: WebSocket) -> None:
        for connection in list(self.active_connections.get(chat_id, [])):
            if connection is not sender:
                try:
                    await connection.send_json(message)
                except Exception:  # the peer is going away; its own handler cleans up
                    pass


manager = ConnectionManager()


def get_chat_id(user1: str, user2: str) -> str:
    return "_".join(sorted([user1, user2]))  # defect #1 (ambiguous), kept


def verify_user(username: str) -> bool:
    if not USER_SEARCH_URL:
        return True
    # Defect #3, kept on purpose: a BLOCKING call inside the async handler stalls the
    # event loop, and so every chat, for the whole round trip.
    response = requests.get(USER_SEARCH_URL, params={"username": username})
    return response.status_code == 200 and "Usuario no encontrado" not in response.text


@app.websocket("/ws/{user1}/{user2}")
async def websocket_endpoint(websocket: WebSocket, user1: str, user2: str) -> None:
    try:
        known = verify_user(user1) and verify_user(user2)
    except requests.RequestException:
        known = False
    if not known:
        await websocket.close(code=1008)  # before accept: a bare handshake failure (#6)
        return
    chat_id = get_chat_id(user1, user2)
    await manager.connect(chat_id, websocket)
    try:
        # Defect #4, kept: the WHOLE history lives in one document and all of it is sent.
        chat = await chats.find_one({"chat_id": chat_id})
        for message in (chat or {}).get("messages", []):
            await websocket.send_json({"sender": message["sender"], "text": message["text"]})
        while True:
            data = await websocket.receive_json()
            message = {"sender": data["sender"], "text": data["text"]}
            update = {"$push": {"messages": message}}
            try:
                await chats.update_one({"chat_id": chat_id}, update, upsert=True)
            except DuplicateKeyError:  # a concurrent upsert created the chat first
                await chats.update_one({"chat_id": chat_id}, update, upsert=True)
            await manager.broadcast(chat_id, message, websocket)
    except (WebSocketDisconnect, WebSocketDisconnected):  # the latter: a send to it failed
        pass
    finally:  # the old service cleaned up only on a clean disconnect (#5); that leak is
        manager.disconnect(chat_id, websocket)  # not kept: it would only break broadcasts


class Server(uvicorn.Server):
    """uvicorn, saying when it listens (the start script waits for that line)."""

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"baseline listening on {self.config.host}:{self.config.port}", flush=True)


if __name__ == "__main__":
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "5010"))
    config = uvicorn.Config(app, host=host, port=port, workers=1,
                            log_level=os.environ.get("LOG_LEVEL", "warning"))
    Server(config).run()
