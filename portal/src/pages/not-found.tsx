/** A path the app does not know. */
import { Page } from "../components/ui.tsx";
import { Link } from "../router.tsx";

/** The not-found page. */
export function NotFoundPage() {
  return (
    <Page title="Page not found">
      <p>
        This page does not exist. Go to your <Link to="/jobs">training jobs</Link>.
      </p>
    </Page>
  );
}
