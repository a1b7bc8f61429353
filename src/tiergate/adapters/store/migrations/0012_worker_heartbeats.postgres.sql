-- The dispatchers alive now, each renewed with its leases: with it a worker knows its fair share of
-- the scopes (all of them over the live workers, rounded up). It takes free scopes only up to that
-- share and gives back what it holds beyond it, so a worker that joins gets work without anyone
-- stopping, and the scopes of one that left are spread over the rest.
CREATE TABLE workers (
    id         TEXT PRIMARY KEY,
    seen_until DOUBLE PRECISION NOT NULL
);
