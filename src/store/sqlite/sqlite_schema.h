#pragma once

// chatd's SQLite schema, in a header of its own so that bench/ceiling's
// persist-then-deliver reference writes to the very same tables and indexes
// (it includes this file and no other part of chatd's store).

namespace chatd::store::sqlite {

// Every table and index a new database gets first. A database made by an
// older chatd gets its missing columns added after this (SqliteBackend).
inline constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS chats (
  id               INTEGER PRIMARY KEY,
  chat_key         TEXT NOT NULL UNIQUE,
  user_a           TEXT NOT NULL,
  user_b           TEXT NOT NULL,
  last_seq         INTEGER NOT NULL,
  last_activity_ms INTEGER NOT NULL,
  blocks           INTEGER NOT NULL DEFAULT 0,
  hidden           INTEGER NOT NULL DEFAULT 0
);
-- A user's chats are found by user and sorted by activity at read time: an
-- index on (user, last_activity_ms) would be rewritten by every commit (each
-- commit sets last_activity_ms of its chats): a quarter of the disk writes
-- at 10,000 msg/s, where commits hold a few messages each. Databases made
-- before this drop those indexes.
DROP INDEX IF EXISTS chats_by_user_a;
DROP INDEX IF EXISTS chats_by_user_b;
CREATE INDEX IF NOT EXISTS chats_of_user_a ON chats (user_a);
CREATE INDEX IF NOT EXISTS chats_of_user_b ON chats (user_b);
CREATE TABLE IF NOT EXISTS messages (
  chat_id   INTEGER NOT NULL,
  seq       INTEGER NOT NULL,
  id        TEXT NOT NULL,
  sender    TEXT NOT NULL,
  text      TEXT NOT NULL,
  ts_ms     INTEGER NOT NULL,
  client_id TEXT,
  hooks     INTEGER NOT NULL DEFAULT 0,
  kind      INTEGER NOT NULL DEFAULT 0,
  target    INTEGER NOT NULL DEFAULT 0,
  edited_ms INTEGER NOT NULL DEFAULT 0,
  deleted   INTEGER NOT NULL DEFAULT 0,
  target_id TEXT,
  PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id
  ON messages (chat_id, sender, client_id) WHERE client_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS reads (
  chat_key TEXT NOT NULL,
  user     TEXT NOT NULL,
  seq      INTEGER NOT NULL,
  hook_seq INTEGER NOT NULL DEFAULT 0,
  hook_ms  INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (chat_key, user)
) WITHOUT ROWID;
)sql";

// After kSchema, once the messages table has its `hooks` column (databases
// made before webhooks get it added): the webhook outbox. The partial index
// holds only messages with events still to send, so it stays as small as the
// backlog, and covers the backlog's count and age.
inline constexpr const char* kOutboxSchema = R"sql(
CREATE INDEX IF NOT EXISTS messages_with_hooks
  ON messages (chat_id, seq, ts_ms) WHERE hooks != 0;
CREATE INDEX IF NOT EXISTS reads_with_hooks
  ON reads (chat_key, user, hook_ms) WHERE hook_seq != 0;
CREATE TABLE IF NOT EXISTS webhook_failed (
  id         TEXT PRIMARY KEY,
  type       TEXT NOT NULL,
  chat_key   TEXT NOT NULL,
  seq        INTEGER NOT NULL,
  bit        INTEGER NOT NULL,
  reader     TEXT NOT NULL,
  attempts   INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  failed_ms  INTEGER NOT NULL,
  body       TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_failed_by_time ON webhook_failed (failed_ms);
)sql";

}  // namespace chatd::store::sqlite
