-- A dead-lettered message never makes a run (runstate.State.Exists): a run
-- exists once it has a kept event that is not a dead letter and that no
-- consumer dead-lettered. Rows stored before for runs that do not (garbage
-- published on a run's subjects, an unsigned change request) are removed;
-- their events stay, and the dead letters are listed by DeadLetters, newest
-- first, through this index.
DELETE FROM runs r
WHERE NOT EXISTS (
    SELECT 1 FROM events e
    WHERE e.run_id = r.run_id AND e.kept AND e.type <> 'event.dead_lettered'
      AND NOT EXISTS (
          SELECT 1 FROM events d
          WHERE d.run_id = e.run_id AND d.type = 'event.dead_lettered'
            AND (d.payload -> 'eventDeadLettered' ->> 'originalSequence')::bigint = e.stream_seq));

CREATE INDEX events_dead_letters ON events (stream_seq) WHERE type = 'event.dead_lettered';
