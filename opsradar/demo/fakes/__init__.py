"""Loopback fakes of the vendor APIs that opsradar reads (Jira, Jenkins, Elasticsearch) and writes
(Slack), built from the vendors' documented responses. They serve real HTTP on 127.0.0.1."""
