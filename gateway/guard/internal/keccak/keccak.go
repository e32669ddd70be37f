// Package keccak is the legacy Keccak-256 hash (the pre-FIPS-202 padding
// that Ethereum uses), for EIP-55 address checksums. It exists so that one
// 64-byte hash does not pull golang.org/x/crypto (and a newer x/net, x/sys
// and x/text) into the module; crypto/sha3 is FIPS-202 SHA3-256, which pads
// differently.
package keccak

import (
	"encoding/binary"
	"math/bits"
)

var rc = [24]uint64{
	0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
	0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
	0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
	0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
	0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
	0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
}

var rotc = [24]int{1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44}
var piln = [24]int{10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1}

func keccakF(a *[25]uint64) {
	var c [5]uint64
	for round := 0; round < 24; round++ {
		for x := 0; x < 5; x++ {
			c[x] = a[x] ^ a[x+5] ^ a[x+10] ^ a[x+15] ^ a[x+20]
		}
		for x := 0; x < 5; x++ {
			d := c[(x+4)%5] ^ bits.RotateLeft64(c[(x+1)%5], 1)
			for y := 0; y < 25; y += 5 {
				a[y+x] ^= d
			}
		}
		t := a[1]
		for i := 0; i < 24; i++ {
			j := piln[i]
			t, a[j] = a[j], bits.RotateLeft64(t, rotc[i])
		}
		for y := 0; y < 25; y += 5 {
			for x := 0; x < 5; x++ {
				c[x] = a[y+x]
			}
			for x := 0; x < 5; x++ {
				a[y+x] = c[x] ^ (^c[(x+1)%5] & c[(x+2)%5])
			}
		}
		a[0] ^= rc[round]
	}
}

// Sum256 returns the legacy Keccak-256 digest of data.
func Sum256(data []byte) [32]byte { return sum(data, 0x01) }

// sum is the sponge with rate 136 and the given domain padding byte (0x01
// legacy Keccak, 0x06 FIPS-202 SHA3-256, which the tests compare against).
func sum(data []byte, pad byte) [32]byte {
	const rate = 136
	var a [25]uint64
	for len(data) >= rate {
		for i := 0; i < rate/8; i++ {
			a[i] ^= binary.LittleEndian.Uint64(data[i*8:])
		}
		keccakF(&a)
		data = data[rate:]
	}
	var block [rate]byte
	copy(block[:], data)
	block[len(data)] ^= pad
	block[rate-1] ^= 0x80
	for i := 0; i < rate/8; i++ {
		a[i] ^= binary.LittleEndian.Uint64(block[i*8:])
	}
	keccakF(&a)
	var out [32]byte
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint64(out[i*8:], a[i])
	}
	return out
}
