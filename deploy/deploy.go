// Package deploy holds the checks of the deployment files: those at the
// repository root (Dockerfile, docker-compose.yml, .env.example), the Helm
// chart in helm/ghlsync, and the Prometheus alert rules
// (prometheus/ghlsync-rules.yml) and Grafana dashboard
// (grafana/ghlsync.json) in this directory. It has no code of its own.
package deploy
