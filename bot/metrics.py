"""Prometheus metrics, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SLACK_COMMANDS = Counter("zqbo_slack_commands_total", "Slash commands received", ["subcommand"])
TOKEN_REFRESHES = Counter("zqbo_token_refreshes_total", "QBO token refresh attempts", ["outcome"])
QBO_REQUESTS = Counter("zqbo_qbo_requests_total", "QBO API calls (after retries)", ["operation", "outcome"])
QBO_RETRIES = Counter("zqbo_qbo_retries_total", "QBO API calls retried", ["reason"])
PROBE_SECONDS = Histogram(
    "zqbo_probe_seconds",
    "Live connection probe duration",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
OAUTH_CALLBACKS = Counter("zqbo_oauth_callbacks_total", "OAuth callbacks by outcome", ["outcome"])
DISCONNECTS = Counter("zqbo_disconnects_total", "QBO connections revoked from Slack")
RECONNECT_STEPS = Counter(
    "zqbo_reconnect_steps_total", "Guided reconnect steps by outcome", ["step", "outcome"]
)
ALERTS = Counter("zqbo_alerts_total", "Alerts by kind and event", ["kind", "event"])
AUDIT_ENTRIES = Counter("zqbo_audit_entries_total", "Changed entries classified by the audit")
AUDIT_RUNS = Counter("zqbo_audit_runs_total", "Audit runs by outcome", ["outcome"])
DISCOVERY_FETCHES = Counter("zqbo_discovery_fetches_total", "OpenID discovery documents fetched from Intuit")
RATE_LIMIT_WAITS = Counter(
    "zqbo_qbo_rate_limit_waits_total", "Times a QBO call waited for its company's limits", ["limit"]
)
RATE_LIMIT_WAIT_SECONDS = Histogram(
    "zqbo_qbo_rate_limit_wait_seconds",
    "Time QBO calls waited for their company's limits",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60),
)
JOBS = Counter("zqbo_jobs_total", "Per-company jobs by kind and outcome", ["kind", "outcome"])
JOBS_HANDED_OUT = Counter("zqbo_jobs_handed_out_total", "Jobs the scheduler leader put on the queue")
QUEUE_DEPTH = Gauge("zqbo_queue_depth", "Jobs waiting in the queue (as this process last saw it)")
ROUND_LAG = Gauge("zqbo_round_lag_seconds", "How late the most overdue company was when last handed out")
LEADER = Gauge("zqbo_scheduler_leader", "1 when this process holds the scheduler lease")
# After-ack work waits in its workspace's own queue: one total and one histogram, never a label per
# workspace (thousands of them would be thousands of series).
AFTER_ACK_WAITING = Gauge("zqbo_after_ack_waiting", "After-ack work waiting for its workspace's turn")
AFTER_ACK_WAIT_SECONDS = Histogram(
    "zqbo_after_ack_wait_seconds",
    "Time after-ack work waited before it started",
    buckets=(0.005, 0.05, 0.25, 1, 5, 15, 60, 300),
)
COMMANDS_LIMITED = Counter(
    "zqbo_commands_limited_total", "Heavy /zqbo commands refused by a limit", ["limit"]
)
