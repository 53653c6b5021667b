package klrl;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;

/** Where tests find real data, all inside the project; a missing folder fails the test, it never skips it. */
public final class TestPaths {
    private TestPaths() {}

    public static Path fixture(String name) {
        Path p = Path.of("src/test/resources/fixtures").resolve(name).toAbsolutePath();
        assertTrue(Files.exists(p), "missing test fixture " + p);
        return p;
    }

    /** This JVM's class path with every entry absolute, for a child JVM that runs in another folder. */
    public static String classPath() {
        java.util.List<String> abs = new java.util.ArrayList<>();
        for (String e : System.getProperty("java.class.path").split(java.io.File.pathSeparator)) {
            abs.add(Path.of(e).toAbsolutePath().toString());
        }
        return String.join(java.io.File.pathSeparator, abs);
    }

    /** Real tokenizer and config files of a published model ("qwen2.5", "llama3.1"; no weights). */
    public static Path model(String name) {
        Path p = Path.of("src/test/resources/models").resolve(name).toAbsolutePath();
        assertTrue(Files.isDirectory(p), "missing model files " + p);
        return p;
    }
}
