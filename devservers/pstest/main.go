// Command pstest-server runs Google's in-memory Pub/Sub fake (pstest) as a
// standalone gRPC server, so tests in other languages can point
// PUBSUB_EMULATOR_HOST at it.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"cloud.google.com/go/pubsub/v2/pstest"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 8085, "port to listen on (0 picks a free one)")
	flag.Parse()

	srv := pstest.NewServerWithAddress(fmt.Sprintf("%s:%d", *host, *port))
	// The Python side waits for this exact line before it connects.
	fmt.Printf("listening on %s\n", srv.Addr)
	os.Stdout.Sync()

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
	if err := srv.Close(); err != nil {
		log.Printf("close: %v", err)
	}
}
