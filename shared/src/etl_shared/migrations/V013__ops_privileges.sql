-- Least privilege for the operations tables (docs/database-setup.md, "The operations tables").
--   ops.locks.owner_role  the role that created the lock row (the session's current_user, by default):
--                         where the database enforces row-level security (PostgreSQL; CockroachDB from
--                         v25.2), a zone role may take, renew and release only the locks it owns, and
--                         never another role's (the database setup's policies on ops.locks). Rows from
--                         before this migration have no owner; released ones are removed here (the next
--                         acquire inserts them again, with their owner), one held at this moment keeps
--                         a null owner until it is released and is open to every zone role until then.

alter table ops.locks add column if not exists owner_role text;

alter table ops.locks alter column owner_role set default current_user;

-- idempotent: deletes released lock rows without an owner; a second run finds none
delete from ops.locks
where owner_role is null and holder is null;
