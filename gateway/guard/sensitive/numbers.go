package sensitive

// CREDIT_CARD, US_SSN, IBAN and PHONE validators.

// luhn checks the Luhn sum of the digits in b[s:e] (other bytes skipped).
func luhn(b []byte, s, e int) bool {
	sum, dbl := 0, false
	for k := e - 1; k >= s; k-- {
		c := b[k]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if dbl {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		dbl = !dbl
	}
	return sum%10 == 0
}

// iinOK checks the issuer prefix (first six digits as p6) against the
// card length: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay,
// Maestro, Mir. Numbers starting with 0, 1, 7, 8 or 9 are not payment
// cards.
func iinOK(p6, length int) bool {
	p2, p3, p4 := p6/10000, p6/1000, p6/100
	switch p6 / 100000 {
	case 4:
		return length == 13 || length == 16 || length == 19
	case 5:
		if p2 >= 51 && p2 <= 55 {
			return length == 16
		}
		return (p2 == 50 || p2 >= 56) && length >= 13 && length <= 19
	case 2:
		if p4 >= 2221 && p4 <= 2720 {
			return length == 16
		}
		return p4 >= 2200 && p4 <= 2204 && length >= 16 && length <= 19
	case 3:
		switch {
		case p2 == 34 || p2 == 37:
			return length == 15
		case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39, p4 == 3095:
			return length >= 14 && length <= 19
		case p4 >= 3528 && p4 <= 3589:
			return length >= 16 && length <= 19
		}
		return false
	case 6:
		return length >= 16 && length <= 19
	}
	return false
}

func prefix6(b []byte, s, e int) int {
	v, n := 0, 0
	for k := s; k < e && n < 6; k++ {
		if isDigit(b[k]) {
			v = v*10 + int(b[k]-'0')
			n++
		}
	}
	for ; n < 6; n++ {
		v *= 10
	}
	return v
}

// card tries the whole digit run and its shorter group prefixes (a card
// followed by an expiry year stays a card).
func card(b []byte, t *numTok) (Finding, bool) {
	ng := t.ng
	if ng > len(t.glen) {
		ng = len(t.glen)
	}
	digits := t.digits
	if t.ng > len(t.glen) {
		digits = 0
		for g := 0; g < ng; g++ {
			digits += int(t.glen[g])
		}
	}
	for k := ng; k >= 1; k-- {
		if k < ng {
			digits -= int(t.glen[k])
		}
		if digits < 13 {
			break
		}
		if digits > 19 {
			continue
		}
		if k > 1 {
			sep := t.sep[0]
			if t.glen[0] != 4 || sep == '.' && !(k == 4 && t.glen[1] == 4 && t.glen[2] == 4 && t.glen[3] == 4) {
				continue // dots only in 4.4.4.4 (not a version number)
			}
			ok := true
			for g := 0; g < k; g++ {
				// groups of 3 to 6; the last group of a 17-19 digit
				// number may be shorter (4-4-4-4-1)
				if g < k-1 && t.sep[g] != sep || t.glen[g] > 6 || t.glen[g] < 3 && !(g == k-1 && k == ng && digits > 16) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
		}
		e := t.gend[k-1]
		if !bndEnd(b, e) || e < len(b) && b[e] == '.' && e+1 < len(b) && isDigit(b[e+1]) {
			continue
		}
		if iinOK(prefix6(b, t.start, e), digits) && luhn(b, t.start, e) {
			return Finding{Entity: CreditCard, Rule: "luhn", Start: t.start, End: e}, true
		}
	}
	return Finding{}, false
}

// ssn checks AAA-GG-SSSS (or with spaces): area not 000, 666 or 9xx,
// group not 00, serial not 0000, and not a number known from
// advertisements.
func ssn(b []byte, t *numTok) (Finding, bool) {
	if t.ng == 1 && t.glen[0] == 9 && ssnContext(b, t.start) {
		s := t.start
		return ssnCheck(b, s, s+3, s+5, t.end)
	}
	if t.ng != 3 || t.glen[0] != 3 || t.glen[1] != 2 || t.glen[2] != 4 || t.sep[0] != t.sep[1] || t.sep[0] == '.' {
		return Finding{}, false
	}
	s := t.start
	return ssnCheck(b, s, s+4, s+7, t.end)
}

// ssnContext reports whether one of "ssn", "social security", "ss#" or
// "ss no" comes shortly before s (an undashed 9-digit number is an SSN
// only then).
func ssnContext(b []byte, s int) bool {
	w := b[max(0, s-32):s]
	return hasFold(w, "ssn") || hasFold(w, "social security") || hasFold(w, "ss#") || hasFold(w, "ss no")
}

// ssnCheck validates area b[s:s+3], group b[g:g+2], serial b[q:q+4].
func ssnCheck(b []byte, s, g, q, end int) (Finding, bool) {
	area := int(b[s]-'0')*100 + int(b[s+1]-'0')*10 + int(b[s+2]-'0')
	group := int(b[g]-'0')*10 + int(b[g+1]-'0')
	serial := 0
	for k := q; k < q+4; k++ {
		serial = serial*10 + int(b[k]-'0')
	}
	if area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0 {
		return Finding{}, false
	}
	switch area*1000000 + group*10000 + serial {
	case 78051120, 219099999, 457555462:
		return Finding{}, false
	}
	return Finding{Entity: USSSN, Rule: "ssn", Start: s, End: end}, true
}

// ibanLen is the IBAN length per country (SWIFT IBAN registry).
var ibanLen = map[[2]byte]uint8{
	{'A', 'D'}: 24, {'A', 'E'}: 23, {'A', 'L'}: 28, {'A', 'T'}: 20, {'A', 'Z'}: 28, {'B', 'A'}: 20, {'B', 'E'}: 16,
	{'B', 'G'}: 22, {'B', 'H'}: 22, {'B', 'I'}: 27, {'B', 'R'}: 29, {'B', 'Y'}: 28, {'C', 'H'}: 21, {'C', 'R'}: 22,
	{'C', 'Y'}: 28, {'C', 'Z'}: 24, {'D', 'E'}: 22, {'D', 'J'}: 27, {'D', 'K'}: 18, {'D', 'O'}: 28, {'E', 'E'}: 20,
	{'E', 'G'}: 29, {'E', 'S'}: 24, {'F', 'I'}: 18, {'F', 'K'}: 18, {'F', 'O'}: 18, {'F', 'R'}: 27, {'G', 'B'}: 22,
	{'G', 'E'}: 22, {'G', 'I'}: 23, {'G', 'L'}: 18, {'G', 'R'}: 27, {'G', 'T'}: 28, {'H', 'R'}: 21, {'H', 'U'}: 28,
	{'I', 'E'}: 22, {'I', 'L'}: 23, {'I', 'Q'}: 23, {'I', 'S'}: 26, {'I', 'T'}: 27, {'J', 'O'}: 30, {'K', 'W'}: 30,
	{'K', 'Z'}: 20, {'L', 'B'}: 28, {'L', 'C'}: 32, {'L', 'I'}: 21, {'L', 'T'}: 20, {'L', 'U'}: 20, {'L', 'V'}: 21,
	{'L', 'Y'}: 25, {'M', 'C'}: 27, {'M', 'D'}: 24, {'M', 'E'}: 22, {'M', 'K'}: 19, {'M', 'N'}: 20, {'M', 'R'}: 27,
	{'M', 'T'}: 31, {'M', 'U'}: 30, {'N', 'I'}: 28, {'N', 'L'}: 18, {'N', 'O'}: 15, {'O', 'M'}: 23, {'P', 'K'}: 24,
	{'P', 'L'}: 28, {'P', 'S'}: 29, {'P', 'T'}: 25, {'Q', 'A'}: 29, {'R', 'O'}: 24, {'R', 'S'}: 22, {'R', 'U'}: 33,
	{'S', 'A'}: 24, {'S', 'C'}: 31, {'S', 'D'}: 18, {'S', 'E'}: 24, {'S', 'I'}: 19, {'S', 'K'}: 24, {'S', 'M'}: 27,
	{'S', 'O'}: 23, {'S', 'T'}: 25, {'S', 'V'}: 28, {'T', 'L'}: 23, {'T', 'N'}: 24, {'T', 'R'}: 26, {'U', 'A'}: 29,
	{'V', 'A'}: 22, {'V', 'G'}: 24, {'X', 'K'}: 20, {'Y', 'E'}: 30,
}

// IBANLength returns the IBAN length for a country code, 0 if unknown.
func IBANLength(country string) int {
	if len(country) != 2 {
		return 0
	}
	return int(ibanLen[[2]byte{country[0], country[1]}])
}

// iban validates an IBAN at s (country code), compact or printed in groups
// of four separated by single spaces: the country's length and ISO 7064
// mod 97-10.
func iban(b []byte, s int) (Finding, bool) {
	cc := [2]byte{b[s] &^ 0x20, b[s+1] &^ 0x20}
	want := int(ibanLen[cc])
	if want == 0 || s+4 > len(b) || !isDigit(b[s+2]) || !isDigit(b[s+3]) {
		return Finding{}, false
	}
	lowerCase := b[s] >= 'a'
	var buf [34]byte
	n := 0
	j := s
	var sep byte
	for j < len(b) && n < want {
		c := b[j]
		switch {
		case isDigit(c) || !lowerCase && isUpper(c) || lowerCase && c >= 'a' && c <= 'z':
			buf[n] = c &^ 0x20
			if isDigit(c) {
				buf[n] = c
			}
			n++
			j++
		case (c == ' ' || c == '-') && (sep == 0 || sep == c) && n%4 == 0 && n > 0 && j+1 < len(b) && isAlnum(b[j+1]) && b[j-1] != c:
			sep = c
			j++
		default:
			return Finding{}, false
		}
	}
	if n != want || !bndEnd(b, j) || j < len(b) && (b[j] == '-' || b[j] == '_') {
		return Finding{}, false
	}
	// rearrange: BBAN then country code and check digits; letters are 10..35
	rem := 0
	for k := 0; k < n; k++ {
		c := buf[(k+4)%n]
		if isDigit(c) {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A'+10)) % 97
		}
	}
	if rem != 1 {
		return Finding{}, false
	}
	return Finding{Entity: IBAN, Rule: "iban", Start: s, End: j}, true
}

// nanpOK checks a ten-digit North American number: area code [2-9][0-8]x,
// exchange [2-9]xx. d holds the ten digits.
func nanpOK(d []byte) bool {
	return d[0] >= '2' && d[1] != '9' && d[3] >= '2'
}

func phoneNANP(b []byte, t *numTok) (Finding, bool) {
	g := t.glen
	var d [10]byte
	n := 0
	switch {
	case t.ng == 3 && g[0] == 3 && g[1] == 3 && g[2] == 4:
	case t.ng == 4 && g[0] == 1 && g[1] == 3 && g[2] == 3 && g[3] == 4 && b[t.start] == '1':
	default:
		return Finding{}, false
	}
	if (t.sep[0] == '.') != (t.sep[t.ng-2] == '.') {
		return Finding{}, false
	}
	for k := t.start; k < t.end; k++ {
		if isDigit(b[k]) {
			if t.ng == 4 && k == t.start {
				continue
			}
			d[n] = b[k]
			n++
		}
	}
	if !nanpOK(d[:]) {
		return Finding{}, false
	}
	return Finding{Entity: Phone, Rule: "nanp", Start: t.start, End: t.end}, true
}

// ccOK reports whether d (the leading digits) starts with an ITU country
// calling code.
func ccOK(d []byte) bool {
	if len(d) < 2 {
		return false
	}
	if d[0] == '1' || d[0] == '7' {
		return true
	}
	p := int(d[0]-'0')*10 + int(d[1]-'0')
	switch p {
	case 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55, 56, 57, 58,
		60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98:
		return true
	case 21, 22, 23, 24, 25, 26, 29, 35, 37, 38, 42, 50, 59, 67, 68, 69, 85, 87, 88, 96, 97, 99:
		return len(d) >= 3 // three-digit codes
	}
	return false
}

// phoneIntl validates +CC followed by digit groups (spaces, dashes, dots,
// an area code in parentheses): 8 to 15 digits (E.164).
func phoneIntl(b []byte, plus int) (Finding, bool) {
	var d [16]byte
	nd := 0
	j, end := plus+1, plus+1
	for j < len(b) {
		if isDigit(b[j]) {
			for j < len(b) && isDigit(b[j]) {
				if nd == len(d) {
					return Finding{}, false
				}
				d[nd] = b[j]
				nd++
				j++
			}
			end = j
		} else if b[j] == '(' {
			k := j + 1
			for k < len(b) && isDigit(b[k]) && k-j < 6 {
				if nd == len(d) {
					return Finding{}, false
				}
				d[nd] = b[k]
				nd++
				k++
			}
			if k >= len(b) || b[k] != ')' || k == j+1 {
				return Finding{}, false
			}
			j = k + 1
			end = j
		} else {
			break
		}
		if j+1 < len(b) && (b[j] == ' ' || b[j] == '-' || b[j] == '.') && (isDigit(b[j+1]) || b[j+1] == '(') {
			j++
			continue
		}
		if j < len(b) && (b[j] == '(' || isDigit(b[j]) && b[j-1] == ')') {
			continue
		}
		break
	}
	if nd < 8 || nd > 15 || !bndEnd(b, end) || !ccOK(d[:nd]) {
		return Finding{}, false
	}
	if end < len(b) && (b[end] == '.' || b[end] == '-') && end+1 < len(b) && isDigit(b[end+1]) {
		return Finding{}, false
	}
	if d[0] == '1' && (nd != 11 || !nanpOK(d[1:11])) {
		return Finding{}, false
	}
	return Finding{Entity: Phone, Rule: "e164", Start: plus, End: end}, true
}

// phoneParen validates (NPA) NXX-XXXX at p.
func phoneParen(b []byte, p int) (Finding, bool) {
	var d [10]byte
	j := p + 1
	for k := 0; k < 3; k++ {
		if j >= len(b) || !isDigit(b[j]) {
			return Finding{}, false
		}
		d[k] = b[j]
		j++
	}
	if j >= len(b) || b[j] != ')' {
		return Finding{}, false
	}
	j++
	if j < len(b) && (b[j] == ' ' || b[j] == '-') {
		j++
	}
	for k := 3; k < 10; k++ {
		if k == 6 {
			if j < len(b) && (b[j] == '-' || b[j] == '.' || b[j] == ' ') {
				j++
			}
		}
		if j >= len(b) || !isDigit(b[j]) {
			return Finding{}, false
		}
		d[k] = b[j]
		j++
	}
	if !bndEnd(b, j) || !nanpOK(d[:]) {
		return Finding{}, false
	}
	return Finding{Entity: Phone, Rule: "nanp", Start: p, End: j}, true
}
