package threshold

import (
	_ "filippo.io/age"
	_ "go.dedis.ch/kyber/v3/pairing/bn256"
	_ "go.dedis.ch/kyber/v3/share/dkg/pedersen"
	_ "go.dedis.ch/kyber/v3/sign/tbls"
)
