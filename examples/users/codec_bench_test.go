package users

import (
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/dlock-go/dlock/runtime/genrt"
)

var benchUser = User{ID: 7, Name: "ada", Tags: []string{"admin", "ops", "oncall"},
	Seen: time.Unix(1700000000, 0).UTC(), Friends: map[string]int64{"bob": 2, "cy": 3, "dee": 4}}

// The generated codec (what LoadUser sends) against msgpack's reflective
// Marshal/Unmarshal on the same value; the goal is >= 2x.
func BenchmarkCodec_User(b *testing.B) {
	b.Run("generated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, err := genrt.EncodeTuple(1, func(enc *msgpack.Encoder) error { return dlockEncUser(enc, benchUser) })
			if err != nil {
				b.Fatal(err)
			}
			var u User
			if err := genrt.DecodeTuple(buf, 1, func(dec *msgpack.Decoder) (err error) { u, err = dlockDecUser(dec); return }); err != nil || u.ID != 7 {
				b.Fatal(err)
			}
		}
	})
	b.Run("reflective", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf, err := msgpack.Marshal(benchUser)
			if err != nil {
				b.Fatal(err)
			}
			var u User
			if err := msgpack.Unmarshal(buf, &u); err != nil || u.ID != 7 {
				b.Fatal(err)
			}
		}
	})
}

// The generated codec round-trips what the reflective one does.
func TestCodec_User_roundTrip(t *testing.T) {
	buf, err := genrt.EncodeTuple(1, func(enc *msgpack.Encoder) error { return dlockEncUser(enc, benchUser) })
	if err != nil {
		t.Fatal(err)
	}
	var u User
	if err := genrt.DecodeTuple(buf, 1, func(dec *msgpack.Decoder) (err error) { u, err = dlockDecUser(dec); return }); err != nil {
		t.Fatal(err)
	}
	if u.ID != benchUser.ID || u.Name != benchUser.Name || len(u.Tags) != 3 || !u.Seen.Equal(benchUser.Seen) || u.Friends["dee"] != 4 {
		t.Fatalf("round trip = %+v; want %+v", u, benchUser)
	}
}

// Decoding garbage fails with an error, never a panic.
func FuzzDecodeUser(f *testing.F) {
	buf, _ := genrt.EncodeTuple(1, func(enc *msgpack.Encoder) error { return dlockEncUser(enc, benchUser) })
	f.Add(buf)
	f.Add([]byte{0x91, 0x95})
	f.Fuzz(func(t *testing.T, b []byte) {
		genrt.DecodeTuple(b, 1, func(dec *msgpack.Decoder) error { _, err := dlockDecUser(dec); return err })
	})
}
