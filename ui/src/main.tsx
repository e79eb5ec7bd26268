import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { captureTokenFromUrl } from "./api";
import { App } from "./App";
import "./styles.css";

captureTokenFromUrl();
createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
