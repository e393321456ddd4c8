package dlockrt

import (
	_ "embed"

	"github.com/redis/go-redis/v9"
)

// Each script runs by SHA (EVALSHA), falling back to EVAL on NOSCRIPT, which
// also reloads it: one round trip per state change. Every key and channel a
// script touches is passed in KEYS and shares one hash tag.
var (
	//go:embed scripts/lock_acquire.lua
	lockAcquireSrc    string
	scriptLockAcquire = redis.NewScript(lockAcquireSrc)

	//go:embed scripts/lock_extend.lua
	lockExtendSrc    string
	scriptLockExtend = redis.NewScript(lockExtendSrc)

	//go:embed scripts/lock_release.lua
	lockReleaseSrc    string
	scriptLockRelease = redis.NewScript(lockReleaseSrc)
)

var (
	//go:embed scripts/fanout_join.lua
	fanoutJoinSrc    string
	scriptFanoutJoin = redis.NewScript(fanoutJoinSrc)

	//go:embed scripts/fanout_complete.lua
	fanoutCompleteSrc    string
	scriptFanoutComplete = redis.NewScript(fanoutCompleteSrc)
)

var (
	//go:embed scripts/sem_acquire.lua
	semAcquireSrc    string
	scriptSemAcquire = redis.NewScript(semAcquireSrc)

	//go:embed scripts/sem_extend.lua
	semExtendSrc    string
	scriptSemExtend = redis.NewScript(semExtendSrc)

	//go:embed scripts/sem_release.lua
	semReleaseSrc    string
	scriptSemRelease = redis.NewScript(semReleaseSrc)
)

var (
	//go:embed scripts/inspect.lua
	inspectSrc    string
	scriptInspect = redis.NewScript(inspectSrc)
)
