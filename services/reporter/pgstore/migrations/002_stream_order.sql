-- The projection is applied in stream order (package reporter's projector):
-- an event is keyed by its stream sequence, every run carries its summary
-- and the head of its hash chain. A projection can always be rebuilt from
-- the stream, so the tables of 001 are replaced and the position reset:
-- the next start re-projects the stream from its first event.
DROP TABLE approvals;
DROP TABLE reports;
DROP TABLE events;
DROP TABLE runs;
DROP SEQUENCE event_ord;

CREATE TABLE runs (
    run_id       text PRIMARY KEY,
    status       text NOT NULL,
    phase        text NOT NULL,
    change_id    text NOT NULL DEFAULT '',
    title        text NOT NULL DEFAULT '',
    requester    text NOT NULL DEFAULT '',
    risk_level   text NOT NULL DEFAULT '',
    started      timestamptz,
    has_cr       boolean NOT NULL DEFAULT false,
    ended        timestamptz,
    final        boolean NOT NULL DEFAULT false,
    report_ready boolean NOT NULL DEFAULT false,
    events       integer NOT NULL DEFAULT 0,
    last_seq     bigint NOT NULL DEFAULT 0,
    -- sha256 chain over the run's events in stream order (see chain.go)
    chain        bytea NOT NULL
);
CREATE INDEX runs_started ON runs (started DESC NULLS LAST, run_id);
CREATE INDEX runs_unreported ON runs (run_id) WHERE final AND NOT report_ready;

CREATE TABLE events (
    stream_seq bigint PRIMARY KEY,
    event_id   text NOT NULL,
    run_id     text NOT NULL,
    type       text NOT NULL,
    subject    text NOT NULL,
    time       timestamptz NOT NULL,
    actor      text NOT NULL DEFAULT '',
    -- false for deploy.step.output and test.load.progress (not folded)
    kept       boolean NOT NULL,
    payload    jsonb NOT NULL,
    -- the run's chain up to and including this event
    chain      bytea NOT NULL
);
CREATE INDEX events_run_seq ON events (run_id, stream_seq);

CREATE TABLE reports (
    run_id      text PRIMARY KEY,
    stream_seq  bigint NOT NULL,
    event_id    text NOT NULL,
    status      text NOT NULL,
    report_json text NOT NULL,
    report      jsonb,
    qc_summary  text NOT NULL
);

CREATE TABLE approvals (
    stream_seq bigint PRIMARY KEY,
    event_id   text NOT NULL,
    run_id     text NOT NULL,
    role       text NOT NULL,
    approver   text NOT NULL,
    decision   text NOT NULL,
    comment    text NOT NULL DEFAULT '',
    reason     text NOT NULL DEFAULT '',
    time       timestamptz NOT NULL
);
CREATE INDEX approvals_run ON approvals (run_id, stream_seq);

UPDATE projection_state SET last_seq = 0;
