package cn.cpn.surplus.clients;

import io.cloudevents.CloudEvent;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.kafka.CloudEventSerializer;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Publishes Surplus events with the CloudEvents Java SDK in binary content mode.
 *
 * <p>Usage: {@code Produce <bootstrap> <topic prefix>}; standard input has one event per line,
 * tab-separated: topic name, key (dc_id), id, source, type, time (RFC 3339), data (JSON).
 * Prints the number of events acknowledged by the broker.
 */
public final class Produce {
  private Produce() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: Produce <bootstrap> <topic prefix> < events.tsv");
      System.exit(2);
    }
    // snippet:start
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
    // binary content mode is the serializer's default: attributes go to ce_ headers
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, CloudEventSerializer.class);
    AtomicReference<Exception> failed = new AtomicReference<>();
    int sent = 0;
    try (KafkaProducer<String, CloudEvent> producer = new KafkaProducer<>(props);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      for (String line = in.readLine(); line != null; line = in.readLine()) {
        String[] f = line.split("\t", 7);
        CloudEvent event = CloudEventBuilder.v1()
            .withId(f[2])
            .withSource(URI.create(f[3]))                // "//cpn/dc/<dc_id>"
            .withType(f[4])                              // e.g. "cpn.capacity.v1"
            .withTime(OffsetDateTime.parse(f[5]))
            .withExtension("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .withData("application/json", f[6].getBytes(StandardCharsets.UTF_8))
            .build();
        // message key = dc_id
        producer.send(new ProducerRecord<>(args[1] + f[0], f[1], event), (meta, error) -> {
          if (error != null) {
            failed.compareAndSet(null, error);
          }
        });
        sent++;
      }
      producer.flush();
    }
    // snippet:end
    if (failed.get() != null) {
      System.err.println("publish failed: " + failed.get());
      System.exit(1);
    }
    System.out.println(sent);
  }
}
