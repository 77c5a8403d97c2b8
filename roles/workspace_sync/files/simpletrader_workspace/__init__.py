"""simpletrader-workspace: the trading host's workspace routine (``sync``, ``eod``, ``status``, ``migrate``).

Runs as root, by the Python 3.9 of the tool virtualenv that
``roles/workspace_sync`` installs it into (botocore and uv beside it).
Contracts (bucket layout, manifest, host paths, markers, lock, last line,
result file): ``docs/CONTRACTS.md``, "Host routines".

Module map (one concern each; only ``s3`` talks to S3, only ``fsutil`` opens
files beneath a directory without following links)::

    cli        parse the command line, run one command under the lock, print the last line, exit code
    sync       the sync, step by step: leftovers, rescue, download, code, files, venv, switch, ready marker
    eod        the closure script, then the day's trade data and the jobs' logs to the bucket
    status     the workdir, the releases' upload state, the lock, the ready marker
    migrate    the state of earlier versions moved into root's state dir, once (also the migrate command)
    config     the configuration file: every key, its type, default and check (SCHEMA)
    statedir   root's state dir: refused unless only root can change it and the way to it, then made
    workdir    the workdir symlink in the trading user's directory: opened without links, switched, adopted
    manifest   the release's manifest: read, checked, objects grouped by role
    codeindex  the code index: read and checked, the plan (keep or fetch each file), ranges, members
    codebase   the code tree: the whole archive extracted, or built from the plan; links judged
    release    release directories: list, current, a new one (.partial -> final), rescue, prune
    upload     trade data: which files, the upload marker, confirmed or not, the upload itself
    joblogs    the cron jobs' logs of the last days to the bucket, with a marker of their own
    ledger     the ledger carried over from the previous workspace or the bucket
    venv       the trading virtualenvs (uv or pip, offline) and the wheelhouse they are built from
    s3         the bucket: client, verified downloads and reads, ranged GETs, uploads, listings, errors
    fsutil     files as root in the trading user's directories: Beneath, open_dir, remove_at, write_atomic,
               hashes, copies, chown
    lock       the flock shared with the cron jobs
    output     progress lines, the last line's Outcome, the --result-json file
    errors     Failure: an expected failure, reported in one line
    clock      UTC timestamps as the markers write them
"""
