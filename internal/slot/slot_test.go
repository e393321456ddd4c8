package slot

import "testing"

// The expected slots are what CLUSTER KEYSLOT answers on Redis 7; the cluster
// tests in runtime also compare Of with the server for generated keys.
func TestOf(t *testing.T) {
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"123456789", 12739}, // CRC16/XMODEM check value 0x31C3 % 16384
		{"foo", 12182},
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"foo{}{bar}", 8363},
		{"foo{{bar}}zap", 4015},
		{"foo{bar}{zap}", 5061},
		{"", 0},
	} {
		if got := Of(tc.key); got != tc.want {
			t.Errorf("Of(%q) = %d; want %d", tc.key, got, tc.want)
		}
	}
}
