-- An approval row names who decided (the event's actor: the key that
-- signed the decision) and the plan it is about (its plan_sha256), beside
-- the approver the payload names. Rows stored before are filled from
-- their events.
ALTER TABLE approvals
    ADD COLUMN actor       text NOT NULL DEFAULT '',
    ADD COLUMN plan_sha256 text NOT NULL DEFAULT '';

UPDATE approvals a
SET actor = e.actor,
    plan_sha256 = coalesce(e.payload -> 'approvalGranted' ->> 'planSha256',
                           e.payload -> 'approvalRejected' ->> 'planSha256',
                           e.payload -> 'approvalRefused' ->> 'planSha256', '')
FROM events e
WHERE e.stream_seq = a.stream_seq;
