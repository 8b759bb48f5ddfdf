// Command produce publishes Surplus events in the CloudEvents Kafka binding's binary content
// mode with segmentio/kafka-go, signed (HMAC-SHA256) in the canonical form of schemas/signing.py
// when SURPLUS_SIGNING_SECRET_HEX is set. Used by tests/integration/test_cloudevents_go.py.
//
// Usage: produce -bootstrap host:port -prefix cpn. [-key-id '{dc_id}-1'] < events.tsv
// Standard input: one event per line, tab-separated: topic name, key (dc_id), id, source, type,
// time (RFC 3339), data (JSON). Prints the number of events written.
package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/segmentio/kafka-go"
)

// snippet:go:start
// signingInput is what a binary-mode signature covers: every ce_ header and content-type,
// sorted by name, one "name:value\n" line each, an empty line, then the value.
func signingInput(headers []kafka.Header, value []byte) []byte {
	var signed []kafka.Header
	for _, h := range headers {
		if strings.HasPrefix(h.Key, "ce_") {
			signed = append(signed, h)
		} else if strings.EqualFold(h.Key, "content-type") {
			signed = append(signed, kafka.Header{Key: "content-type", Value: h.Value})
		}
	}
	sort.Slice(signed, func(i, j int) bool { return signed[i].Key < signed[j].Key })
	out := []byte("cloudevents-kafka-binary/1\n")
	for _, h := range signed {
		out = append(append(append(append(out, h.Key...), ':'), h.Value...), '\n')
	}
	return append(append(out, '\n'), value...)
}

func binaryMessage(topic, dcID, id, source, eventType, time string, data []byte, keyID string, secret []byte) kafka.Message {
	headers := []kafka.Header{
		{Key: "ce_specversion", Value: []byte("1.0")},
		{Key: "ce_id", Value: []byte(id)},
		{Key: "ce_source", Value: []byte(source)},  // "//cpn/dc/<dc_id>"
		{Key: "ce_type", Value: []byte(eventType)}, // e.g. "cpn.capacity.v1"
		{Key: "ce_time", Value: []byte(time)},
		{Key: "ce_traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
		{Key: "content-type", Value: []byte("application/json")},
	}
	if secret != nil {
		mac := hmac.New(sha256.New, secret)
		mac.Write(signingInput(headers, data))
		sig := base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		headers = append(headers, kafka.Header{Key: "surplus-signature",
			Value: []byte("v1;kid=" + keyID + ";alg=hmac-sha256;sig=" + sig)})
	}
	return kafka.Message{Topic: topic, Key: []byte(dcID), Value: data, Headers: headers} // key = dc_id
}

// snippet:go:end

func main() {
	bootstrap := flag.String("bootstrap", "127.0.0.1:9092", "Kafka bootstrap host:port")
	prefix := flag.String("prefix", "cpn.", "topic prefix")
	keyID := flag.String("key-id", "{dc_id}-1", "signing key id, {dc_id} replaced by the DC (the secret is SURPLUS_SIGNING_SECRET_HEX)")
	flag.Parse()
	var secret []byte
	if text := os.Getenv("SURPLUS_SIGNING_SECRET_HEX"); text != "" {
		var err error
		if secret, err = hex.DecodeString(text); err != nil {
			fmt.Fprintln(os.Stderr, "SURPLUS_SIGNING_SECRET_HEX is not hex")
			os.Exit(2)
		}
	}
	writer := &kafka.Writer{Addr: kafka.TCP(*bootstrap), Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll}
	defer writer.Close()
	var batch []kafka.Message
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		f := strings.SplitN(scanner.Text(), "\t", 7)
		if len(f) != 7 {
			fmt.Fprintln(os.Stderr, "a line needs 7 tab-separated fields")
			os.Exit(2)
		}
		kid := strings.ReplaceAll(*keyID, "{dc_id}", f[1])
		batch = append(batch, binaryMessage(*prefix+f[0], f[1], f[2], f[3], f[4], f[5], []byte(f[6]), kid, secret))
	}
	if err := writer.WriteMessages(context.Background(), batch...); err != nil {
		fmt.Fprintln(os.Stderr, "publish failed:", err)
		os.Exit(1)
	}
	fmt.Println(len(batch))
}
