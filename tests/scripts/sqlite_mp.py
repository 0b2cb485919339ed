"""SQLite and multiprocessing in a scratch directory (argv[1]): creates a
database with 10,000 rows, queries it, and sums squares with a pool of two
worker processes. Prints only deterministic results; removes what it made."""
import hashlib
import multiprocessing
import os
import shutil
import sqlite3
import sys


def square(x):
    return x * x


def worker_pid_differs(_):
    return os.getpid() != PARENT


PARENT = os.getpid()


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "."
    work = os.path.join(base, "sqlite_mp.%d" % os.getpid())
    os.mkdir(work)
    try:
        db = os.path.join(work, "test.db")
        con = sqlite3.connect(db)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, v REAL)")
        con.executemany(
            "INSERT INTO t (name, v) VALUES (?, ?)",
            (("row%05d" % i, i * 0.5) for i in range(10000)),
        )
        con.commit()
        con.execute("CREATE INDEX t_name ON t(name)")
        print("count", con.execute("SELECT COUNT(*) FROM t").fetchone()[0])
        print("sum", con.execute("SELECT SUM(v) FROM t").fetchone()[0])
        print("like", con.execute("SELECT COUNT(*) FROM t WHERE name LIKE 'row01%'").fetchone()[0])
        print("indexed", con.execute("SELECT id, v FROM t WHERE name = 'row04242'").fetchone())
        con.execute("UPDATE t SET v = v * 2 WHERE id % 2 = 0")
        con.execute("DELETE FROM t WHERE id > 9000")
        con.commit()
        h = hashlib.sha256()
        for row in con.execute("SELECT id, name, v FROM t ORDER BY id"):
            h.update(repr(row).encode())
        print("digest", h.hexdigest()[:16])
        # A second connection sees committed data (file locks, WAL, shm).
        con2 = sqlite3.connect(db)
        print("second connection", con2.execute("SELECT COUNT(*) FROM t").fetchone()[0])
        con2.close()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
        print("integrity", sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0])
        print("db size multiple of page", os.path.getsize(db) % 4096 == 0)

        with multiprocessing.Pool(2) as pool:
            print("pool sum of squares", sum(pool.map(square, range(1000))))
            print("workers are other processes", all(pool.map(worker_pid_differs, range(4))))
        q = multiprocessing.Queue()
        p = multiprocessing.Process(target=q.put, args=("via queue",))
        p.start()
        print(q.get(timeout=30))
        p.join()
        print("process exitcode", p.exitcode)
        print("cpu_count positive", (os.cpu_count() or 0) > 0)
        print("fd dir lists stdio", all(str(i) in os.listdir("/proc/self/fd") for i in range(3)))
        print("entries left", sorted(os.listdir(work)))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
