// Package deploy holds the checks of the deployment files: those at the
// repository root (Dockerfile, docker-compose.yml, .env.example) and the
// Helm chart in helm/ghlsync; it has no code of its own.
package deploy
