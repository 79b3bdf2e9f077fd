"""Whether and when a login's password is checked: the per-name delay and per-address limit, and
the turns a login waits for without holding a thread."""
