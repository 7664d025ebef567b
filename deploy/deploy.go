// Package deploy holds the checks of the deployment files at the
// repository root (Dockerfile, docker-compose.yml, .env.example); it has no
// code of its own.
package deploy
