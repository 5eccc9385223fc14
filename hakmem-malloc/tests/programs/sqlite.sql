-- For tests/preload.rs: 500k rows inserted into a file database in one
-- transaction, an index built on a text column, then queries whose answers
-- are known: (x * 7919) mod 500000 is a permutation of 0..499999, and
-- key 12345 belongs to x = 247255.
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, pad TEXT);
BEGIN;
INSERT INTO t(k, v, pad)
  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000)
  SELECT printf('key%07d', (x * 7919) % 500000), x, hex(randomblob(16)) FROM c;
COMMIT;
CREATE INDEX t_k ON t(k);
SELECT 'count', count(*), sum(v), count(DISTINCT k) FROM t;
SELECT 'lookup', v FROM t WHERE k = 'key0012345';
SELECT 'range', count(*) FROM t WHERE k BETWEEN 'key0100000' AND 'key0199999';
SELECT 'sorted', count(*) FROM (SELECT pad FROM t ORDER BY pad LIMIT 10);
PRAGMA integrity_check;
