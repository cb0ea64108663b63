-- The reporter's read model: a projection of the audit stream that can
-- always be rebuilt from it.
CREATE TABLE runs (
    run_id       text PRIMARY KEY,
    status       text NOT NULL,
    change_id    text NOT NULL DEFAULT '',
    title        text NOT NULL DEFAULT '',
    requester    text NOT NULL DEFAULT '',
    risk_level   text NOT NULL DEFAULT '',
    started      timestamptz,
    has_cr       boolean NOT NULL DEFAULT false,
    ended        timestamptz,
    final        boolean NOT NULL DEFAULT false,
    report_ready boolean NOT NULL DEFAULT false
);

CREATE SEQUENCE event_ord;

-- event_id is the key: a consumer delivery does not carry the stream
-- sequence, so stream_seq is filled when known (rebuild scan, reconcile,
-- the reporter's own publication) and unique then.
CREATE TABLE events (
    event_id   text PRIMARY KEY,
    stream_seq bigint UNIQUE,
    ord        bigint NOT NULL DEFAULT nextval('event_ord'),
    run_id     text NOT NULL REFERENCES runs (run_id),
    type       text NOT NULL,
    subject    text NOT NULL,
    time       timestamptz NOT NULL,
    actor      text NOT NULL DEFAULT '',
    kept       boolean NOT NULL,
    payload    jsonb NOT NULL
);
CREATE INDEX events_run_ord ON events (run_id, ord);

CREATE TABLE reports (
    run_id      text PRIMARY KEY REFERENCES runs (run_id),
    event_id    text NOT NULL,
    status      text NOT NULL,
    report_json text NOT NULL,
    report      jsonb,
    qc_summary  text NOT NULL
);

CREATE TABLE approvals (
    event_id text PRIMARY KEY,
    run_id   text NOT NULL REFERENCES runs (run_id),
    role     text NOT NULL,
    approver text NOT NULL,
    decision text NOT NULL,
    time     timestamptz NOT NULL
);
CREATE INDEX approvals_run ON approvals (run_id);

-- last_seq: every stream sequence up to it is stored (it only moves by one,
-- in the transaction that stores that event).
CREATE TABLE projection_state (
    id       boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq bigint NOT NULL
);
INSERT INTO projection_state (last_seq) VALUES (0);
