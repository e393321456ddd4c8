package main

import (
	"io"
	"log/slog"
	"net/url"

	"github.com/redis/go-redis/v9"
)

// connect opens the Redis the URL names: a Sentinel set when it says
// master_name, a Cluster when cluster is set, else one server. TLS
// (rediss://) and ACL users come from the URL, as go-redis reads them.
func connect(rawURL string, cluster bool) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch {
	case cluster:
		o, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(o), nil
	case u.Query().Has("master_name"):
		o, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, err
		}
		return redis.NewFailoverClient(o), nil
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

// quiet is the client's logger: the command reports errors itself.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
