package klrl;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;

/** Where tests find real data; a missing folder fails the test, it never skips it. */
public final class TestPaths {
    private TestPaths() {}

    public static Path fixture(String name) {
        Path p = Path.of("src/test/resources/fixtures").resolve(name).toAbsolutePath();
        assertTrue(Files.exists(p), "missing test fixture " + p);
        return p;
    }

    /** The project lead's real tokenizer/config files, beside the checkout (../shared/models). */
    public static Path shared(String model) {
        Path p = Path.of("../../shared/models").resolve(model).toAbsolutePath().normalize();
        assertTrue(Files.isDirectory(p), "missing shared model files " + p + " (the checkout needs ../shared beside it)");
        return p;
    }
}
