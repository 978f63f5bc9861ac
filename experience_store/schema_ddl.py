"""The DuckDB DDL of each shipped schema migration, one constant per migration (see `migrations`).

Frozen like the migrations themselves: a text here that has shipped is never edited; a schema change is a
new constant and a new entry at the end of `migrations.MIGRATIONS`. The Postgres variants are derived from
these texts in `migrations` (`_pg_types`).
"""

CORE = """
CREATE TABLE store_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE libraries (
    name VARCHAR PRIMARY KEY,
    created_at TIMESTAMP NOT NULL,
    current_version INTEGER NOT NULL DEFAULT 0,
    next_exp_id INTEGER NOT NULL DEFAULT 1,
    embed_model VARCHAR,
    embed_dim INTEGER
);
CREATE TABLE experiences (
    library VARCHAR NOT NULL,
    id INTEGER NOT NULL,
    text VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    created_version INTEGER NOT NULL,
    updated_version INTEGER NOT NULL,
    times_injected BIGINT NOT NULL DEFAULT 0,
    times_won BIGINT NOT NULL DEFAULT 0,
    support INTEGER NOT NULL DEFAULT 1,
    merged_into INTEGER,
    embedding FLOAT[],
    PRIMARY KEY (library, id)
);
CREATE TABLE exp_revisions (
    library VARCHAR NOT NULL,
    exp_id INTEGER NOT NULL,
    valid_from INTEGER NOT NULL,
    valid_to INTEGER,
    text VARCHAR NOT NULL,
    embedding FLOAT[]
);
CREATE TABLE versions (
    library VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    n_ops INTEGER NOT NULL,
    n_live INTEGER NOT NULL,
    run_id VARCHAR,
    step INTEGER,
    PRIMARY KEY (library, version)
);
CREATE TABLE ops (
    id BIGINT PRIMARY KEY,
    library VARCHAR NOT NULL,
    version INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    exp_id INTEGER,
    merge_ids INTEGER[],
    before_text VARCHAR,
    after_text VARCHAR,
    reason VARCHAR,
    outcome VARCHAR NOT NULL,
    note VARCHAR,
    duplicate_of INTEGER,
    similarity DOUBLE,
    run_id VARCHAR,
    step INTEGER,
    group_id VARCHAR,
    rollout_ids VARCHAR[],
    call_id VARCHAR,
    created_at TIMESTAMP NOT NULL
);
"""

RUNS = """
CREATE TABLE runs (
    id VARCHAR PRIMARY KEY,
    library VARCHAR,
    kind VARCHAR NOT NULL,
    model VARCHAR,
    config VARCHAR,
    status VARCHAR NOT NULL,
    steps INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    error VARCHAR,
    metrics VARCHAR
);
CREATE TABLE rollouts (
    id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    step INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    question_id VARCHAR NOT NULL,
    question VARCHAR NOT NULL,
    completion VARCHAR NOT NULL,
    reward DOUBLE NOT NULL,
    reward_reason VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    version INTEGER,
    finish_reason VARCHAR,
    error VARCHAR,
    extra VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE llm_calls (
    id VARCHAR PRIMARY KEY,
    ts DOUBLE NOT NULL,
    run_id VARCHAR,
    stage VARCHAR,
    model VARCHAR,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd DOUBLE,
    latency_s DOUBLE,
    request VARCHAR,
    response VARCHAR,
    finish_reason VARCHAR,
    error VARCHAR,
    attempts INTEGER,
    meta VARCHAR
);
CREATE TABLE learner_rejections (
    id BIGINT PRIMARY KEY,
    run_id VARCHAR,
    step INTEGER,
    stage VARCHAR,
    reason VARCHAR,
    raw VARCHAR,
    created_at TIMESTAMP NOT NULL
);
CREATE TABLE evals (
    id BIGINT PRIMARY KEY,
    run_id VARCHAR,
    library VARCHAR,
    version INTEGER,
    task VARCHAR,
    model VARCHAR,
    metrics VARCHAR,
    created_at TIMESTAMP NOT NULL
);
"""


COUNTER_MARKS = """
CREATE TABLE counter_marks (
    library VARCHAR NOT NULL,
    mark VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (library, mark)
);
"""


KINDS_GATE_PRIOR = """
ALTER TABLE experiences ADD COLUMN kind VARCHAR DEFAULT 'lesson';
ALTER TABLE experiences ADD COLUMN gate_delta DOUBLE DEFAULT 0;
ALTER TABLE versions ADD COLUMN prior VARCHAR;
CREATE TABLE gate_decisions (
    id BIGINT PRIMARY KEY,
    library VARCHAR NOT NULL,
    run_id VARCHAR,
    step INTEGER,
    base_version INTEGER NOT NULL,
    new_version INTEGER,
    n_items INTEGER NOT NULL,
    score_base DOUBLE NOT NULL,
    score_new DOUBLE NOT NULL,
    delta DOUBLE NOT NULL,
    threshold DOUBLE NOT NULL,
    accepted BOOLEAN NOT NULL,
    ops VARCHAR,
    created_at TIMESTAMP NOT NULL
);
"""


GATE_EVIDENCE = """
ALTER TABLE gate_decisions ADD COLUMN alpha DOUBLE;
ALTER TABLE gate_decisions ADD COLUMN p_value DOUBLE;
ALTER TABLE gate_decisions ADD COLUMN gained INTEGER;
ALTER TABLE gate_decisions ADD COLUMN lost INTEGER;
ALTER TABLE gate_decisions ADD COLUMN item_scores VARCHAR;
"""
