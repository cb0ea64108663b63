-- One reporter writes the projection at a time: the holder of the write
-- lease (pgstore/lease.go). Who holds it is a session advisory lock;
-- lease_token, beside the position it guards, is the fence: it grows by one
-- at every takeover, and a batch commits only while the token is the one
-- its writer took. lease_holder and lease_since say who took it, and when.
ALTER TABLE projection_state
    ADD COLUMN lease_token  bigint NOT NULL DEFAULT 0,
    ADD COLUMN lease_holder text NOT NULL DEFAULT '',
    ADD COLUMN lease_since  timestamptz;
