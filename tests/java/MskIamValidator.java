// A stand-in for Amazon MSK's check of IAM tokens, as a broker plugin: the OAUTHBEARER server
// callback handler of the `oidc` cluster's listener MSK_IAM (scripts/kafka), for kcon's tests of
// `sasl.oauthbearer.method=aws_msk_iam`. No AWS service is asked: every access key is taken to
// have the secret of the JAAS option `secret`.
//
// A token is accepted when it is the unpadded base64url of
// https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-... presigned with
// SigV4 for the service kafka-cluster in the JAAS option `region`, with that secret (the
// signature recomputed here from the query's other parameters, User-Agent excepted), and is
// within its validity (X-Amz-Date, less 5 minutes of clock skew, to X-Amz-Date plus
// X-Amz-Expires). The token's lifetime is its validity's end, so the broker ends the session
// then at the latest (KIP-368). Every token's principal is `msk-iam`: MSK's is the IAM identity
// behind the keys, which stays the same while session credentials rotate (and Kafka refuses a
// re-authentication that changes the principal). Each decision is printed on stdout (the node's `stdout` file):
//   kcon-msk-iam accepted <access key> until <epoch ms>
//   kcon-msk-iam refused <reason>

import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.UnsupportedCallbackException;
import javax.security.auth.login.AppConfigurationEntry;
import org.apache.kafka.common.security.auth.AuthenticateCallbackHandler;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerExtensionsValidatorCallback;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerToken;
import org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallback;

public class MskIamValidator implements AuthenticateCallbackHandler {
    private static final DateTimeFormatter AMZ_DATE =
        DateTimeFormatter.ofPattern("yyyyMMdd'T'HHmmss'Z'");
    private static final long SKEW_MS = 5 * 60 * 1000;

    private String secret;
    private String region;

    @Override
    public void configure(Map<String, ?> configs, String mechanism,
                          List<AppConfigurationEntry> jaas) {
        Map<String, ?> options = jaas.get(0).getOptions();
        secret = (String) options.get("secret");
        region = (String) options.get("region");
        if (secret == null || region == null) {
            throw new IllegalArgumentException("MskIamValidator needs the JAAS options secret and region");
        }
    }

    @Override
    public void handle(Callback[] callbacks) throws UnsupportedCallbackException {
        for (Callback callback : callbacks) {
            if (callback instanceof OAuthBearerValidatorCallback) {
                OAuthBearerValidatorCallback validation = (OAuthBearerValidatorCallback) callback;
                try {
                    validation.token(check(validation.tokenValue()));
                } catch (Exception e) {
                    System.out.println("kcon-msk-iam refused " + e.getMessage());
                    System.out.flush();
                    validation.error("invalid_token", null, null);
                }
            } else if (callback instanceof OAuthBearerExtensionsValidatorCallback) {
                // No extension is expected; none is validated.
            } else {
                throw new UnsupportedCallbackException(callback);
            }
        }
    }

    private OAuthBearerToken check(String token) throws Exception {
        String url = new String(Base64.getUrlDecoder().decode(token), StandardCharsets.UTF_8);
        URI uri = URI.create(url);
        String host = "kafka." + region + ".amazonaws.com";
        if (!"https".equals(uri.getScheme()) || !host.equals(uri.getHost())
                || !"/".equals(uri.getRawPath())) {
            throw new Exception("not a request to https://" + host + "/: " + url);
        }
        TreeMap<String, String> signed = new TreeMap<>();
        String signature = null;
        for (String pair : uri.getRawQuery().split("&")) {
            int eq = pair.indexOf('=');
            String name = pair.substring(0, eq);
            String value = pair.substring(eq + 1);
            if (name.equals("X-Amz-Signature")) {
                signature = value;
            } else if (!name.equals("User-Agent")) {
                signed.put(name, value);
            }
        }
        require("kafka-cluster%3AConnect".equals(signed.get("Action")), "Action");
        require("AWS4-HMAC-SHA256".equals(signed.get("X-Amz-Algorithm")), "X-Amz-Algorithm");
        require("host".equals(signed.get("X-Amz-SignedHeaders")), "X-Amz-SignedHeaders");
        require(signature != null, "X-Amz-Signature");
        String[] scope = URLDecoder.decode(signed.get("X-Amz-Credential"), StandardCharsets.UTF_8)
            .split("/");
        require(scope.length == 5 && scope[2].equals(region) && scope[3].equals("kafka-cluster")
            && scope[4].equals("aws4_request"), "X-Amz-Credential");
        String amzDate = signed.get("X-Amz-Date");
        long signedAt = LocalDateTime.parse(amzDate, AMZ_DATE).toInstant(ZoneOffset.UTC).toEpochMilli();
        long expiresAt = signedAt + Long.parseLong(signed.get("X-Amz-Expires")) * 1000;
        long now = System.currentTimeMillis();
        require(now >= signedAt - SKEW_MS, "signed in the future");
        require(now < expiresAt, "expired");

        StringBuilder query = new StringBuilder();
        for (Map.Entry<String, String> e : signed.entrySet()) {
            if (query.length() > 0) {
                query.append('&');
            }
            query.append(e.getKey()).append('=').append(e.getValue());
        }
        String canonical = "GET\n/\n" + query + "\nhost:" + host + "\n\nhost\n" + sha256Hex("");
        String credentialScope = scope[1] + "/" + region + "/kafka-cluster/aws4_request";
        String toSign = "AWS4-HMAC-SHA256\n" + amzDate + "\n" + credentialScope + "\n"
            + sha256Hex(canonical);
        byte[] key = hmac(("AWS4" + secret).getBytes(StandardCharsets.UTF_8), scope[1]);
        key = hmac(key, region);
        key = hmac(key, "kafka-cluster");
        key = hmac(key, "aws4_request");
        require(hex(hmac(key, toSign)).equals(signature), "signature");

        String accessKey = scope[0];
        System.out.println("kcon-msk-iam accepted " + accessKey + " until " + expiresAt);
        System.out.flush();
        return new Token(token, "msk-iam", signedAt, expiresAt);
    }

    private static void require(boolean ok, String what) throws Exception {
        if (!ok) {
            throw new Exception("bad " + what);
        }
    }

    private static byte[] hmac(byte[] key, String data) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        return mac.doFinal(data.getBytes(StandardCharsets.UTF_8));
    }

    private static String sha256Hex(String data) throws Exception {
        return hex(MessageDigest.getInstance("SHA-256").digest(data.getBytes(StandardCharsets.UTF_8)));
    }

    private static String hex(byte[] bytes) {
        StringBuilder s = new StringBuilder();
        for (byte b : bytes) {
            s.append(String.format("%02x", b));
        }
        return s.toString();
    }

    @Override
    public void close() {
    }

    private static final class Token implements OAuthBearerToken {
        private final String value;
        private final String principal;
        private final long start;
        private final long lifetime;

        Token(String value, String principal, long start, long lifetime) {
            this.value = value;
            this.principal = principal;
            this.start = start;
            this.lifetime = lifetime;
        }

        @Override
        public String value() {
            return value;
        }

        @Override
        public Set<String> scope() {
            return Set.of();
        }

        @Override
        public long lifetimeMs() {
            return lifetime;
        }

        @Override
        public String principalName() {
            return principal;
        }

        @Override
        public Long startTimeMs() {
            return start;
        }
    }
}
