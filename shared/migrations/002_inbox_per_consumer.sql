-- One message may be consumed by several durable consumers of the same worker (its sender
-- directory and its own handlers): each applies it once, so the inbox is kept per consumer.
ALTER TABLE inbox ADD COLUMN consumer text NOT NULL DEFAULT '';
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
ALTER TABLE inbox ADD PRIMARY KEY (consumer, sender, msg_id);
