-- Shared state of rate limits and budgets (gateway/limits/pglimits).
-- Every statement is idempotent; Migrate runs the file under an advisory
-- lock in one transaction. Times are Unix nanoseconds (bigint), buckets
-- Unix seconds, money nano-USD, months year*12 + month-1.

CREATE TABLE IF NOT EXISTS limits_schema (version integer NOT NULL);

-- The replicas holding leases. A replica refreshes expires_ns; the leases
-- of one that stops doing so expire (see limits_heartbeat).
CREATE SEQUENCE IF NOT EXISTS limits_replica_seq;
CREATE TABLE IF NOT EXISTS limits_replicas (
    replica    bigint PRIMARY KEY,
    name       text   NOT NULL,
    started_ns bigint NOT NULL,
    expires_ns bigint NOT NULL
);

-- Rate-limit windows: units by lease and bucket. An open lease is one row
-- at the bucket of its end (it counts its whole grant until it is
-- closed); a closed lease is one row per bucket its units were used in.
-- A row counts against every grant made until 60 buckets after its own.
CREATE SEQUENCE IF NOT EXISTS limits_lease_seq;
CREATE TABLE IF NOT EXISTS limits_window_units (
    lease     bigint   NOT NULL,
    bucket    bigint   NOT NULL,
    securable bigint   NOT NULL,
    scope     smallint NOT NULL,
    principal bigint   NOT NULL,
    replica   bigint   NOT NULL,
    requests  bigint   NOT NULL,
    tokens    bigint   NOT NULL,
    PRIMARY KEY (lease, bucket)
);
CREATE INDEX IF NOT EXISTS limits_window_units_key ON limits_window_units (securable, scope, principal, bucket);
CREATE INDEX IF NOT EXISTS limits_window_units_bucket ON limits_window_units (bucket);

-- Budgets: the month's figures per account (principal 0 for a budget of
-- one scope, the subject for FOR EACH USER). spent is settled cost;
-- leased is what live replicas hold (reserved by calls in flight or not
-- yet used); forfeited is what replicas that stopped without returning
-- held (charged as spent: their calls may have used it).
CREATE TABLE IF NOT EXISTS limits_budgets (
    budget    text    NOT NULL,
    month     integer NOT NULL,
    name      text    NOT NULL,
    seeded_ns bigint  NOT NULL,
    PRIMARY KEY (budget, month)
);
CREATE TABLE IF NOT EXISTS limits_budget_accounts (
    budget    text    NOT NULL,
    principal bigint  NOT NULL,
    month     integer NOT NULL,
    spent     bigint  NOT NULL DEFAULT 0,
    leased    bigint  NOT NULL DEFAULT 0,
    forfeited bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (budget, principal, month)
);
-- One lease per account and replica: amount is the allowance it holds,
-- settled the cumulative cost it settled (idempotent flushes). dead: the
-- replica stopped renewing and forfeit was charged to the account; a
-- replica that comes back revives it.
CREATE TABLE IF NOT EXISTS limits_budget_leases (
    budget    text    NOT NULL,
    principal bigint  NOT NULL,
    month     integer NOT NULL,
    replica   bigint  NOT NULL,
    amount    bigint  NOT NULL DEFAULT 0,
    settled   bigint  NOT NULL DEFAULT 0,
    forfeit   bigint  NOT NULL DEFAULT 0,
    dead      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (budget, principal, month, replica)
);
CREATE INDEX IF NOT EXISTS limits_budget_leases_replica ON limits_budget_leases (replica);
-- Accounts where a grant was short only because of other replicas'
-- leases: their holders give back what they do not use.
CREATE TABLE IF NOT EXISTS limits_budget_contention (
    budget    text    NOT NULL,
    principal bigint  NOT NULL,
    month     integer NOT NULL,
    since_ns  bigint  NOT NULL,
    PRIMARY KEY (budget, principal, month)
);

CREATE OR REPLACE FUNCTION limits_now(p_now bigint) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    SELECT COALESCE(p_now, (extract(epoch FROM clock_timestamp()) * 1000000000)::bigint)
$$;

CREATE OR REPLACE FUNCTION limits_live_replicas(p_now bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT GREATEST(count(*), 1) FROM limits_replicas WHERE expires_ns > p_now
$$;

-- limits_window applies a replica's pending operations on one key's leases
-- (closes, then unit deltas) and, if p_grant, leases units: per limited
-- dimension, when free = limit - units counted (buckets >= now's - 60,
-- open leases included) covers p_need, it grants
-- least(free, greatest(p_demand, least(p_want, free / live replicas))),
-- recorded at the bucket of now + p_lease_ns under the replica's own
-- lease id p_lease_id (so that a grant whose answer was lost can be
-- closed by the next round trip). It returns the count after the grant
-- and the other replicas' units by bucket.
CREATE OR REPLACE FUNCTION limits_window(
    p_replica bigint, p_now bigint,
    p_securable bigint, p_scope smallint, p_principal bigint,
    p_close bigint[],
    p_rows_lease bigint[], p_rows_bucket bigint[], p_rows_req bigint[], p_rows_tok bigint[],
    p_grant boolean, p_lease_ns bigint, p_lim_req bigint, p_lim_tok bigint,
    p_need_req bigint, p_need_tok bigint, p_demand_req bigint, p_demand_tok bigint,
    p_want_req bigint, p_want_tok bigint, p_lease_id bigint,
    OUT now_ns bigint, OUT lease_id bigint, OUT lease_bucket bigint, OUT granted_req bigint, OUT granted_tok bigint,
    OUT count_req bigint, OUT count_tok bigint,
    OUT o_bucket bigint[], OUT o_req bigint[], OUT o_tok bigint[])
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    b bigint;
    i integer;
    free bigint;
    nrep bigint;
    ok boolean := true;
BEGIN
    now_ns := limits_now(p_now);
    b := now_ns / 1000000000;
    lease_id := 0; lease_bucket := 0; granted_req := 0; granted_tok := 0;
    IF p_grant THEN
        -- Grants on one key are serialized; everything else only lowers
        -- the count (closes, refunds) or may exceed it (extra usage).
        PERFORM pg_advisory_xact_lock(1819112567, hashtext(p_securable || '/' || p_scope || '/' || p_principal));
    END IF;
    IF cardinality(p_close) > 0 THEN
        DELETE FROM limits_window_units WHERE limits_window_units.lease = ANY (p_close) AND replica = p_replica;
    END IF;
    FOR i IN 1 .. COALESCE(cardinality(p_rows_lease), 0) LOOP
        IF p_rows_lease[i] = 0 THEN -- extra usage without a lease: a row of its own
            IF p_rows_req[i] > 0 OR p_rows_tok[i] > 0 THEN
                INSERT INTO limits_window_units (lease, bucket, securable, scope, principal, replica, requests, tokens)
                VALUES (nextval('limits_lease_seq'), p_rows_bucket[i], p_securable, p_scope, p_principal, p_replica,
                        GREATEST(p_rows_req[i], 0), GREATEST(p_rows_tok[i], 0));
            END IF;
            CONTINUE;
        END IF;
        UPDATE limits_window_units u
           SET requests = GREATEST(u.requests + p_rows_req[i], 0), tokens = GREATEST(u.tokens + p_rows_tok[i], 0)
         WHERE u.lease = p_rows_lease[i] AND u.bucket = p_rows_bucket[i];
        IF NOT FOUND AND (p_rows_req[i] > 0 OR p_rows_tok[i] > 0) THEN
            INSERT INTO limits_window_units (lease, bucket, securable, scope, principal, replica, requests, tokens)
            VALUES (p_rows_lease[i], p_rows_bucket[i], p_securable, p_scope, p_principal, p_replica,
                    GREATEST(p_rows_req[i], 0), GREATEST(p_rows_tok[i], 0))
            ON CONFLICT (lease, bucket) DO UPDATE
               SET requests = limits_window_units.requests + EXCLUDED.requests,
                   tokens = limits_window_units.tokens + EXCLUDED.tokens;
        END IF;
    END LOOP;
    IF cardinality(p_rows_lease) > 0 THEN
        DELETE FROM limits_window_units u
         WHERE u.lease = ANY (p_rows_lease) AND u.requests = 0 AND u.tokens = 0;
    END IF;
    IF p_grant THEN
        DELETE FROM limits_window_units
         WHERE securable = p_securable AND scope = p_scope AND principal = p_principal AND bucket < b - 60;
    END IF;
    SELECT COALESCE(sum(requests), 0), COALESCE(sum(tokens), 0) INTO count_req, count_tok
      FROM limits_window_units
     WHERE securable = p_securable AND scope = p_scope AND principal = p_principal AND bucket >= b - 60;
    IF p_grant THEN
        nrep := limits_live_replicas(now_ns);
        IF p_lim_req > 0 THEN
            free := p_lim_req - count_req;
            IF free < p_need_req THEN
                ok := false;
            ELSE
                granted_req := LEAST(free, GREATEST(p_demand_req, LEAST(p_want_req, free / nrep)));
            END IF;
        END IF;
        IF p_lim_tok > 0 THEN
            free := p_lim_tok - count_tok;
            IF free < p_need_tok THEN
                ok := false;
            ELSE
                granted_tok := LEAST(free, GREATEST(p_demand_tok, LEAST(p_want_tok, free / nrep)));
            END IF;
        END IF;
        IF NOT ok THEN
            granted_req := 0; granted_tok := 0;
        ELSIF granted_req > 0 OR granted_tok > 0 THEN
            lease_id := p_lease_id;
            lease_bucket := (now_ns + p_lease_ns) / 1000000000;
            INSERT INTO limits_window_units (lease, bucket, securable, scope, principal, replica, requests, tokens)
            VALUES (lease_id, lease_bucket, p_securable, p_scope, p_principal, p_replica, granted_req, granted_tok);
            count_req := count_req + granted_req;
            count_tok := count_tok + granted_tok;
        ELSE
            lease_id := -1; -- granted nothing because nothing was needed
        END IF;
    END IF;
    SELECT COALESCE(array_agg(s.bucket ORDER BY s.bucket), '{}'), COALESCE(array_agg(s.r ORDER BY s.bucket), '{}'),
           COALESCE(array_agg(s.t ORDER BY s.bucket), '{}')
      INTO o_bucket, o_req, o_tok
      FROM (SELECT u.bucket, sum(u.requests)::bigint AS r, sum(u.tokens)::bigint AS t
              FROM limits_window_units u
             WHERE u.securable = p_securable AND u.scope = p_scope AND u.principal = p_principal
               AND u.bucket >= b - 60 AND u.replica <> p_replica
             GROUP BY u.bucket) s;
END
$$;

-- limits_budget applies a replica's operation on its lease of one budget
-- account: the cumulative cost settled through the lease (idempotent:
-- only the increase since the last call is charged), a release of unused
-- allowance (p_close: all of it), and, if p_grant, a new slice. The
-- account is locked first, then the lease (every function here locks in
-- that order, accounts in key order). A slice is granted when
-- spent + forfeited + leased + p_need <= p_limit:
-- least(free, greatest(p_demand, least(p_want, free / (2 * live replicas)))).
-- Short of that, if the other replicas' leases are what is missing, the
-- account is marked contended (its holders give back what they do not
-- use); else it is exhausted. A lease found dead (its replica was
-- presumed gone) is revived: its forfeit becomes its amount again.
CREATE OR REPLACE FUNCTION limits_budget(
    p_replica bigint, p_now bigint, p_ttl_ns bigint,
    p_budget text, p_principal bigint, p_month integer,
    p_settled bigint, p_release bigint, p_close boolean,
    p_grant boolean, p_limit bigint, p_need bigint, p_demand bigint, p_want bigint,
    OUT now_ns bigint, OUT granted bigint, OUT o_spent bigint, OUT o_leased bigint, OUT o_amount bigint,
    OUT revived boolean, OUT exhausted boolean, OUT contended boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    a limits_budget_accounts%ROWTYPE;
    l limits_budget_leases%ROWTYPE;
    have boolean;
    d bigint;
    c bigint;
    free bigint;
BEGIN
    now_ns := limits_now(p_now);
    granted := 0; revived := false; exhausted := false; contended := false;
    INSERT INTO limits_budget_accounts (budget, principal, month) VALUES (p_budget, p_principal, p_month)
    ON CONFLICT DO NOTHING;
    SELECT * INTO a FROM limits_budget_accounts
     WHERE budget = p_budget AND principal = p_principal AND month = p_month FOR UPDATE;
    SELECT * INTO l FROM limits_budget_leases
     WHERE budget = p_budget AND principal = p_principal AND month = p_month AND replica = p_replica FOR UPDATE;
    have := FOUND;
    IF NOT have THEN
        l.budget := p_budget; l.principal := p_principal; l.month := p_month; l.replica := p_replica;
        l.amount := 0; l.settled := 0; l.forfeit := 0; l.dead := false;
    END IF;
    IF l.dead THEN
        a.forfeited := a.forfeited - l.forfeit;
        a.leased := a.leased + l.forfeit;
        l.amount := l.forfeit; l.forfeit := 0; l.dead := false;
        revived := true;
        INSERT INTO limits_replicas (replica, name, started_ns, expires_ns) VALUES (p_replica, '', now_ns, now_ns + p_ttl_ns)
        ON CONFLICT (replica) DO UPDATE SET expires_ns = GREATEST(limits_replicas.expires_ns, EXCLUDED.expires_ns);
    END IF;
    d := GREATEST(p_settled - l.settled, 0);
    IF d > 0 THEN
        a.spent := a.spent + d;
        c := LEAST(d, l.amount);
        l.amount := l.amount - c;
        a.leased := a.leased - c;
        l.settled := p_settled;
    END IF;
    IF p_close THEN
        c := l.amount;
    ELSE
        c := LEAST(GREATEST(p_release, 0), l.amount);
    END IF;
    l.amount := l.amount - c;
    a.leased := a.leased - c;
    IF p_grant THEN
        free := p_limit - a.spent - a.forfeited - a.leased;
        IF free >= p_need THEN
            granted := LEAST(free, GREATEST(p_demand, LEAST(p_want, free / (2 * limits_live_replicas(now_ns)))));
            l.amount := l.amount + granted;
            a.leased := a.leased + granted;
            DELETE FROM limits_budget_contention
             WHERE budget = p_budget AND principal = p_principal AND month = p_month;
        ELSIF p_limit - a.spent - a.forfeited - l.amount >= p_need THEN
            contended := true;
            INSERT INTO limits_budget_contention (budget, principal, month, since_ns)
            VALUES (p_budget, p_principal, p_month, now_ns)
            ON CONFLICT (budget, principal, month) DO UPDATE SET since_ns = EXCLUDED.since_ns;
        ELSE
            exhausted := true;
        END IF;
    END IF;
    UPDATE limits_budget_accounts SET spent = a.spent, leased = a.leased, forfeited = a.forfeited
     WHERE budget = p_budget AND principal = p_principal AND month = p_month;
    IF have THEN
        UPDATE limits_budget_leases SET amount = l.amount, settled = l.settled, forfeit = l.forfeit, dead = l.dead
         WHERE budget = p_budget AND principal = p_principal AND month = p_month AND replica = p_replica;
    ELSIF l.amount > 0 OR l.settled > 0 THEN
        INSERT INTO limits_budget_leases (budget, principal, month, replica, amount, settled)
        VALUES (p_budget, p_principal, p_month, p_replica, l.amount, l.settled);
    END IF;
    o_spent := a.spent + a.forfeited;
    o_leased := a.leased;
    o_amount := l.amount;
END
$$;

-- limits_heartbeat registers or refreshes a replica and does the shared
-- housekeeping: the leases of replicas that are gone (no row, or not
-- refreshed by expires_ns) are forfeited, old window rows, contention
-- marks and replicas are dropped. It returns the live replicas.
CREATE OR REPLACE FUNCTION limits_heartbeat(p_replica bigint, p_name text, p_now bigint, p_ttl_ns bigint,
    OUT now_ns bigint, OUT live bigint, OUT forfeited_leases bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    k record;
    a limits_budget_accounts%ROWTYPE;
    l limits_budget_leases%ROWTYPE;
BEGIN
    now_ns := limits_now(p_now);
    forfeited_leases := 0;
    IF p_replica > 0 THEN
        INSERT INTO limits_replicas (replica, name, started_ns, expires_ns) VALUES (p_replica, p_name, now_ns, now_ns + p_ttl_ns)
        ON CONFLICT (replica) DO UPDATE SET expires_ns = EXCLUDED.expires_ns, name = EXCLUDED.name;
    END IF;
    FOR k IN
        SELECT x.budget, x.principal, x.month, x.replica FROM limits_budget_leases x
         WHERE NOT x.dead AND x.amount > 0
           AND NOT EXISTS (SELECT 1 FROM limits_replicas r WHERE r.replica = x.replica AND r.expires_ns > now_ns)
         ORDER BY x.budget, x.principal, x.month, x.replica
    LOOP
        SELECT * INTO a FROM limits_budget_accounts
         WHERE budget = k.budget AND principal = k.principal AND month = k.month FOR UPDATE;
        SELECT * INTO l FROM limits_budget_leases
         WHERE budget = k.budget AND principal = k.principal AND month = k.month AND replica = k.replica FOR UPDATE;
        IF FOUND AND NOT l.dead AND l.amount > 0
           AND NOT EXISTS (SELECT 1 FROM limits_replicas r WHERE r.replica = l.replica AND r.expires_ns > now_ns) THEN
            UPDATE limits_budget_accounts SET leased = leased - l.amount, forfeited = forfeited + l.amount
             WHERE budget = k.budget AND principal = k.principal AND month = k.month;
            UPDATE limits_budget_leases SET forfeit = forfeit + l.amount, amount = 0, dead = true
             WHERE budget = k.budget AND principal = k.principal AND month = k.month AND replica = k.replica;
            forfeited_leases := forfeited_leases + 1;
        END IF;
    END LOOP;
    DELETE FROM limits_window_units WHERE bucket < now_ns / 1000000000 - 120;
    DELETE FROM limits_budget_contention WHERE since_ns < now_ns - 10000000000;
    DELETE FROM limits_replicas WHERE expires_ns < now_ns - 10 * p_ttl_ns;
    live := limits_live_replicas(now_ns);
END
$$;

-- limits_budget_seed records a budget's spend for a month from the usage
-- rows, once: the first replica to load the budget for the month seeds it,
-- accounts that already exist keep their figures.
CREATE OR REPLACE FUNCTION limits_budget_seed(p_budget text, p_name text, p_month integer, p_now bigint,
    p_principals bigint[], p_spent bigint[]) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO limits_budgets (budget, month, name, seeded_ns) VALUES (p_budget, p_month, p_name, limits_now(p_now))
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO limits_budget_accounts (budget, principal, month, spent)
    SELECT p_budget, x.p, p_month, x.s FROM unnest(p_principals, p_spent) AS x(p, s) WHERE x.s > 0
    ORDER BY x.p
    ON CONFLICT DO NOTHING;
    RETURN true;
END
$$;
