"""The run engine: every run a row of PostgreSQL before it starts, claimed under a lease by a worker of
any process (`runs`), every write it makes fenced by the attempt that holds it (`fencing`). No route
code here."""
