// Fetch from the debug API when the inputs change; 401/403 go to the sign-in prompt through onAuthError.

import { useEffect, useState } from "react";
import { AuthError, apiGet } from "./api";

export interface ApiState<T> {
  data: T | null;
  error: string | null;
  loading: boolean;
}

export function useApi<T>(
  path: string | null,
  params: Record<string, string | undefined>,
  onAuthError: (error: AuthError) => void,
): ApiState<T> {
  const [state, setState] = useState<ApiState<T>>({ data: null, error: null, loading: path !== null });
  const key = JSON.stringify([path, params]);
  useEffect(() => {
    if (path === null) return;
    let current = true;
    setState({ data: null, error: null, loading: true });
    apiGet<T>(path, params).then(
      (data) => current && setState({ data, error: null, loading: false }),
      (error: unknown) => {
        if (!current) return;
        if (error instanceof AuthError) onAuthError(error);
        setState({ data: null, error: error instanceof Error ? error.message : String(error), loading: false });
      },
    );
    return () => {
      current = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return state;
}
